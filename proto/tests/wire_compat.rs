//! Guards wire compatibility of the API. `wire-snapshot.txt` records every message field,
//! enum value and RPC that has been published; a change that removes or renumbers one
//! (without `reserved`), changes a field's type, or changes an RPC's types fails here.
//! Additions are fine but must be recorded: run
//! `BERTH_UPDATE_WIRE_SNAPSHOT=1 cargo test -p berth-proto --test wire_compat`.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/wire-snapshot.txt");

/// Everything about the API that the wire depends on, keyed so that lookups are by the
/// number a peer sends (fields, enum values) or by name (messages, RPCs).
#[derive(Debug, Default, PartialEq)]
struct Surface {
    /// "pkg.Msg#number" → "name type label type_name"
    fields: BTreeMap<String, String>,
    /// Reserved numbers per message: "pkg.Msg#number"
    reserved_fields: BTreeSet<String>,
    /// "pkg.Enum#number" → name
    enum_values: BTreeMap<String, String>,
    /// Reserved enum numbers: "pkg.Enum#number"
    reserved_values: BTreeSet<String>,
    /// Every message and enum name.
    types: BTreeSet<String>,
    /// "pkg.Service/Method" → "input output client_streaming server_streaming"
    rpcs: BTreeMap<String, String>,
}

fn walk_enum(scope: &str, e: &EnumDescriptorProto, s: &mut Surface) {
    let name = format!("{scope}.{}", e.name());
    for v in &e.value {
        s.enum_values
            .insert(format!("{name}#{}", v.number()), v.name().to_string());
    }
    for r in &e.reserved_range {
        for n in r.start()..=r.end() {
            s.reserved_values.insert(format!("{name}#{n}"));
        }
    }
    s.types.insert(name);
}

fn walk_message(scope: &str, m: &DescriptorProto, s: &mut Surface) {
    let name = format!("{scope}.{}", m.name());
    for f in &m.field {
        s.fields.insert(
            format!("{name}#{}", f.number()),
            format!(
                "{} {:?} {:?} {}",
                f.name(),
                f.r#type(),
                f.label(),
                f.type_name()
            ),
        );
    }
    for r in &m.reserved_range {
        // Message reserved ranges are end-exclusive.
        for n in r.start()..r.end() {
            s.reserved_fields.insert(format!("{name}#{n}"));
        }
    }
    for nested in &m.nested_type {
        walk_message(&name, nested, s);
    }
    for e in &m.enum_type {
        walk_enum(&name, e, s);
    }
    s.types.insert(name);
}

fn surface(fds: &FileDescriptorSet) -> Surface {
    let mut s = Surface::default();
    for file in fds
        .file
        .iter()
        .filter(|f| f.package().starts_with("berth."))
    {
        let pkg = format!(".{}", file.package());
        for m in &file.message_type {
            walk_message(&pkg, m, &mut s);
        }
        for e in &file.enum_type {
            walk_enum(&pkg, e, &mut s);
        }
        for svc in &file.service {
            for m in &svc.method {
                s.rpcs.insert(
                    format!("{}.{}/{}", file.package(), svc.name(), m.name()),
                    format!(
                        "{} {} {} {}",
                        m.input_type(),
                        m.output_type(),
                        m.client_streaming(),
                        m.server_streaming()
                    ),
                );
            }
        }
    }
    s
}

fn render(s: &Surface) -> String {
    let mut out = String::from(
        "# Published wire surface of berth's API; checked by proto/tests/wire_compat.rs.\n",
    );
    for t in &s.types {
        out.push_str(&format!("type {t}\n"));
    }
    for (k, v) in &s.fields {
        out.push_str(&format!("field {k} {v}\n"));
    }
    for k in &s.reserved_fields {
        out.push_str(&format!("reserved-field {k}\n"));
    }
    for (k, v) in &s.enum_values {
        out.push_str(&format!("value {k} {v}\n"));
    }
    for k in &s.reserved_values {
        out.push_str(&format!("reserved-value {k}\n"));
    }
    for (k, v) in &s.rpcs {
        out.push_str(&format!("rpc {k} {v}\n"));
    }
    out
}

fn parse(text: &str) -> Surface {
    let mut s = Surface::default();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        let (key, val) = rest.split_once(' ').unwrap_or((rest, ""));
        let (key, val) = (key.to_string(), val.to_string());
        match kind {
            "type" => drop(s.types.insert(key)),
            "field" => drop(s.fields.insert(key, val)),
            "reserved-field" => drop(s.reserved_fields.insert(key)),
            "value" => drop(s.enum_values.insert(key, val)),
            "reserved-value" => drop(s.reserved_values.insert(key)),
            "rpc" => drop(s.rpcs.insert(key, val)),
            other => panic!("unknown line kind {other:?} in the snapshot"),
        }
    }
    s
}

/// Every way `new` breaks a peer built against `old`.
fn breaks(old: &Surface, new: &Surface) -> Vec<String> {
    let mut out = Vec::new();
    let type_of = |v: &str| {
        v.split_once(' ')
            .map(|(_, t)| t.to_string())
            .unwrap_or_default()
    };
    for t in &old.types {
        if !new.types.contains(t) {
            out.push(format!("type {t} was removed"));
        }
    }
    for (k, v) in &old.fields {
        let msg = k.split('#').next().unwrap_or_default();
        if !new.types.contains(msg) {
            continue; // already reported with the type
        }
        match new.fields.get(k) {
            None if new.reserved_fields.contains(k) => {}
            None => out.push(format!(
                "field {k} ({v}) was removed or renumbered without `reserved`"
            )),
            Some(nv) if type_of(nv) != type_of(v) => {
                out.push(format!("field {k} changed type: {v} -> {nv}"))
            }
            Some(_) => {}
        }
    }
    for (k, v) in &old.enum_values {
        if !new.enum_values.contains_key(k) && !new.reserved_values.contains(k) {
            out.push(format!(
                "enum value {k} ({v}) was removed without `reserved`"
            ));
        }
    }
    for (k, v) in &old.rpcs {
        match new.rpcs.get(k) {
            None => out.push(format!("rpc {k} was removed")),
            Some(nv) if nv != v => out.push(format!("rpc {k} changed: {v} -> {nv}")),
            Some(_) => {}
        }
    }
    out
}

/// The `Event` message of system.proto in `fds`, for tests that break it on purpose.
fn event_message(fds: &mut FileDescriptorSet) -> &mut DescriptorProto {
    system_file(fds)
        .message_type
        .iter_mut()
        .find(|m| m.name() == "Event")
        .unwrap()
}

fn system_file(fds: &mut FileDescriptorSet) -> &mut prost_types::FileDescriptorProto {
    fds.file
        .iter_mut()
        .find(|f| f.name().ends_with("engine/v1/system.proto"))
        .unwrap()
}

fn current() -> Surface {
    surface(&FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET).unwrap())
}

#[test]
fn the_api_stays_wire_compatible_with_the_snapshot() {
    let now = current();
    let recorded = std::fs::read_to_string(SNAPSHOT).unwrap_or_default();
    let old = parse(&recorded);
    let broken = breaks(&old, &now);
    assert!(
        broken.is_empty(),
        "wire-incompatible API change:\n  {}\nUse `reserved` for removed fields and values; \
         never renumber.",
        broken.join("\n  ")
    );
    let rendered = render(&now);
    if std::env::var_os("BERTH_UPDATE_WIRE_SNAPSHOT").is_some() {
        std::fs::write(SNAPSHOT, rendered).unwrap();
        return;
    }
    assert!(
        rendered == recorded,
        "the API grew but {SNAPSHOT} was not updated: run \
         `BERTH_UPDATE_WIRE_SNAPSHOT=1 cargo test -p berth-proto --test wire_compat` and commit it"
    );
}

#[test]
fn removing_or_renumbering_a_field_is_caught() {
    let old = current();
    let mut fds = FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET).unwrap();
    let event = event_message(&mut fds);
    let seq = event.field.iter_mut().find(|f| f.name() == "seq").unwrap();
    seq.number = Some(99);
    let broken = breaks(&old, &surface(&fds));
    assert!(
        broken
            .iter()
            .any(|b| b.contains(".berth.engine.v1.Event#1")),
        "{broken:?}"
    );

    // Removing it with the number reserved is fine.
    let event = event_message(&mut fds);
    event.field.retain(|f| f.name() != "seq");
    event
        .reserved_range
        .push(prost_types::descriptor_proto::ReservedRange {
            start: Some(1),
            end: Some(2),
        });
    assert!(breaks(&old, &surface(&fds)).is_empty());
}

#[test]
fn changing_a_field_type_or_an_rpc_is_caught() {
    let old = current();
    let mut fds = FileDescriptorSet::decode(berth_proto::FILE_DESCRIPTOR_SET).unwrap();
    let id = event_message(&mut fds)
        .field
        .iter_mut()
        .find(|f| f.name() == "id")
        .unwrap();
    id.set_type(prost_types::field_descriptor_proto::Type::Int64);
    let svc = &mut system_file(&mut fds).service[0];
    let events = svc
        .method
        .iter_mut()
        .find(|m| m.name() == "Events")
        .unwrap();
    events.server_streaming = Some(false);
    let broken = breaks(&old, &surface(&fds));
    assert!(
        broken.iter().any(|b| b.contains("changed type")),
        "{broken:?}"
    );
    assert!(
        broken.iter().any(|b| b.contains("System/Events changed")),
        "{broken:?}"
    );
}
