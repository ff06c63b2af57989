//! Docker's `--format` Go templates: `{{.Names}}`, `table {{.ID}}\t{{.Image}}`,
//! `{{json .State}}`, `{{index .Config.Labels "k"}}`. gtmpl evaluates them over the JSON
//! objects a command prints with `--format json`; this module adds Docker's functions, its
//! `table` prefix and Go's way of printing lists and maps.

use std::collections::BTreeMap;

use gtmpl::{Context, Template, Value};
use gtmpl_value::{FuncError, Number};
use serde_json::Value as Json;

use super::human;

/// Words that open a control action; their actions are left as written.
const KEYWORDS: [&str; 10] = [
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// A parsed `--format` template.
pub struct GoTemplate {
    tmpl: Template,
}

impl GoTemplate {
    /// Parses `src` as Docker does: `\t` and `\n` written as two characters become a tab
    /// and a newline.
    pub fn parse(src: &str) -> Result<Self, String> {
        let src = src.replace("\\t", "\t").replace("\\n", "\n");
        let mut tmpl = Template::default();
        tmpl.add_funcs(&[
            ("_print", go_print as gtmpl_value::Func),
            ("json", json),
            ("join", join),
            ("split", split),
            ("lower", lower),
            ("upper", upper),
            ("title", title),
            ("truncate", truncate),
            ("pad", pad),
        ]);
        tmpl.parse(wrap_actions(&src))
            .map_err(|e| format!("template parsing error: {e}"))?;
        Ok(GoTemplate { tmpl })
    }

    /// Executes the template on one object.
    pub fn render(&self, data: &Json) -> anyhow::Result<String> {
        self.tmpl
            .render(&Context::from(to_value(data)))
            .map_err(|e| match e {
                // gtmpl's own message carries the whole object.
                gtmpl::error::ExecError::NoFiledFor(field, _) => {
                    anyhow::anyhow!("template: map has no entry for key {field:?}")
                }
                e => anyhow::anyhow!("template: {e}"),
            })
    }
}

/// `--format` of a listing command: Docker's table, JSON lines, or a Go template (with
/// `table ` in front: aligned, under a header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
    Template {
        table: bool,
        source: String,
    },
}

impl ListFormat {
    /// clap's value parser: the template is checked here, so a bad one fails before any
    /// call to the engine.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (table, source) = match s.trim() {
            "" | "table" => return Ok(ListFormat::Table),
            "json" => return Ok(ListFormat::Json),
            t => match t.strip_prefix("table") {
                Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim()),
                _ => (false, t),
            },
        };
        GoTemplate::parse(source)?;
        Ok(ListFormat::Template {
            table,
            source: source.to_string(),
        })
    }
}

/// Prints the rows of a listing as JSON lines or through the template; a command prints
/// its own default table (`ListFormat::Table`) before it gets here.
pub fn print_list(
    format: &ListFormat,
    rows: &[Json],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    match format {
        ListFormat::Template { table, source } => print_rows(source, *table, rows, headers),
        ListFormat::Table | ListFormat::Json => {
            json_lines(rows);
            Ok(())
        }
    }
}

/// Prints JSON values one per line, as Docker's `--format json` does for lists.
pub fn json_lines(values: &[Json]) {
    for v in values {
        println!("{v}");
    }
}

/// Prints `rows` through a template, one line each; with `table`, aligned under a header
/// made by running the template on `headers` (field name → column title).
pub fn print_rows(
    source: &str,
    table: bool,
    rows: &[Json],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let tmpl = GoTemplate::parse(source).map_err(anyhow::Error::msg)?;
    let mut lines = Vec::new();
    if table {
        let header: serde_json::Map<String, Json> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), Json::from(*v)))
            .collect();
        lines.push(tmpl.render(&Json::Object(header))?);
    }
    for row in rows {
        lines.push(tmpl.render(row)?);
    }
    if table {
        let cells: Vec<Vec<String>> = lines
            .iter()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect();
        print!("{}", human::table(&cells));
    } else {
        for l in lines {
            println!("{l}");
        }
    }
    Ok(())
}

/// Wraps every action that prints a value in `_print (…)`, so that lists and maps print as
/// Go's fmt prints them (`[a b]`, `map[k:v]`): gtmpl would print them Rust's way. Control
/// actions, comments and declarations are left alone; an unterminated action is left for
/// the parser to report.
fn wrap_actions(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 16);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(len) = action_len(after) else {
            out.push_str(&rest[start..]);
            return out;
        };
        out.push_str("{{");
        out.push_str(&wrap_action(&after[..len]));
        out.push_str("}}");
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    out
}

/// Length of an action's text up to its `}}`, skipping quoted strings and comments.
fn action_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' | b'\'' => {
                let q = b[i];
                i += 1;
                while i < b.len() && b[i] != q {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'`' => {
                i += 1;
                while i < b.len() && b[i] != b'`' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += s[i..].find("*/").map_or(b.len(), |e| e + 1);
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn wrap_action(inner: &str) -> String {
    // `{{- ` and ` -}}` trim the text around; they stay outside the wrapping.
    let lead =
        inner.len() > 1 && inner.starts_with('-') && inner[1..].starts_with(char::is_whitespace);
    let body = if lead { &inner[1..] } else { inner };
    let trail = body.len() > 1
        && body.ends_with('-')
        && body[..body.len() - 1].ends_with(char::is_whitespace);
    let body = if trail { &body[..body.len() - 1] } else { body };
    let t = body.trim();
    let first = t
        .split(|c: char| c.is_whitespace() || c == '(')
        .next()
        .unwrap_or("");
    let declares = t.starts_with('$')
        && t.split_whitespace()
            .nth(1)
            .is_some_and(|w| w == ":=" || w == "=" || w.ends_with(',') || w.starts_with(":="));
    if t.is_empty() || t.starts_with("/*") || KEYWORDS.contains(&first) || declares {
        return inner.to_string();
    }
    format!(
        "{} _print ({t}) {}",
        if lead { "-" } else { "" },
        if trail { "-" } else { "" }
    )
}

fn to_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (None, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(0.0)),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(a) => Value::Array(a.iter().map(to_value).collect()),
        Json::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), to_value(v))).collect()),
    }
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Nil | Value::NoValue | Value::Function(_) => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => number_json(n),
        Value::String(s) => Json::String(s.clone()),
        Value::Array(a) => Json::Array(a.iter().map(to_json).collect()),
        Value::Object(o) | Value::Map(o) => Json::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

fn number_json(n: &Number) -> Json {
    if let Some(i) = n.as_i64() {
        Json::from(i)
    } else if let Some(u) = n.as_u64() {
        Json::from(u)
    } else {
        n.as_f64().map_or(Json::Null, Json::from)
    }
}

/// A value as Go's `fmt.Print` shows it.
fn go_string(v: &Value) -> String {
    match v {
        Value::NoValue => "<no value>".into(),
        Value::Nil | Value::Function(_) => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_string).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(o) | Value::Map(o) => {
            let sorted: BTreeMap<_, _> = o.iter().collect();
            let items: Vec<String> = sorted
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_string(v)))
                .collect();
            format!("map[{}]", items.join(" "))
        }
    }
}

fn arg<'a>(args: &'a [Value], name: &str, n: usize) -> Result<&'a [Value], FuncError> {
    if args.len() == n {
        Ok(args)
    } else {
        Err(FuncError::ExactlyXArgs(name.into(), n))
    }
}

fn string_arg(v: &Value) -> Result<String, FuncError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Ok(go_string(other)),
    }
}

fn int_arg(v: &Value) -> Result<i64, FuncError> {
    match v {
        Value::Number(n) => n.as_i64().ok_or(FuncError::UnableToConvertFromValue),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn go_print(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "print", 1)?;
    Ok(Value::String(go_string(&a[0])))
}

fn json(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "json", 1)?;
    serde_json::to_string(&to_json(&a[0]))
        .map(Value::String)
        .map_err(|e| FuncError::Generic(e.to_string()))
}

fn join(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "join", 2)?;
    let sep = string_arg(&a[1])?;
    match &a[0] {
        Value::Array(items) => Ok(Value::String(
            items.iter().map(go_string).collect::<Vec<_>>().join(&sep),
        )),
        _ => Err(FuncError::UnableToConvertFromValue),
    }
}

fn split(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "split", 2)?;
    let (s, sep) = (string_arg(&a[0])?, string_arg(&a[1])?);
    Ok(Value::Array(
        s.split(sep.as_str())
            .map(|p| Value::String(p.into()))
            .collect(),
    ))
}

fn lower(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(&arg(args, "lower", 1)?[0])?.to_lowercase(),
    ))
}

fn upper(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        string_arg(&arg(args, "upper", 1)?[0])?.to_uppercase(),
    ))
}

fn title(args: &[Value]) -> Result<Value, FuncError> {
    let s = string_arg(&arg(args, "title", 1)?[0])?;
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

fn truncate(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "truncate", 2)?;
    let s = string_arg(&a[0])?;
    let n = usize::try_from(int_arg(&a[1])?).unwrap_or(0);
    Ok(Value::String(s.chars().take(n).collect()))
}

fn pad(args: &[Value]) -> Result<Value, FuncError> {
    let a = arg(args, "pad", 3)?;
    let s = string_arg(&a[0])?;
    let (l, r) = (int_arg(&a[1])?.max(0), int_arg(&a[2])?.max(0));
    Ok(Value::String(format!(
        "{}{s}{}",
        " ".repeat(l as usize),
        " ".repeat(r as usize)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(t: &str, data: &Json) -> String {
        GoTemplate::parse(t).unwrap().render(data).unwrap()
    }

    #[test]
    fn renders_as_docker_does() {
        let d = json!({
            "Name": "/c1",
            "State": {"Status": "running", "Pid": 42, "Running": true},
            "Config": {"Cmd": ["sleep", "1000"], "Labels": {"b": "2", "a": "1"}, "Env": null},
        });
        let cases = [
            ("{{.State.Status}} {{.State.Pid}}", "running 42"),
            ("{{.Config.Cmd}}", "[sleep 1000]"),
            ("{{.Config.Labels}}", "map[a:1 b:2]"),
            ("{{.Config.Env}}", "<nil>"),
            ("{{json .Config.Labels}}", r#"{"a":"1","b":"2"}"#),
            ("{{json .Config.Cmd}}", r#"["sleep","1000"]"#),
            ("{{index .Config.Labels \"a\"}}", "1"),
            ("{{join .Config.Cmd \",\"}}", "sleep,1000"),
            (
                "{{upper .State.Status}}|{{title \"up now\"}}",
                "RUNNING|Up Now",
            ),
            ("{{range .Config.Cmd}}<{{.}}>{{end}}", "<sleep><1000>"),
            (
                "{{range $i, $c := .Config.Cmd}}{{$i}}={{$c}} {{end}}",
                "0=sleep 1=1000 ",
            ),
            ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
            ("{{with .State}}{{.Pid}}{{end}}", "42"),
            ("{{$p := .State.Pid}}{{$p}}", "42"),
            ("{{.Name | printf \"%s!\"}}", "/c1!"),
            ("a {{- \" b \" -}} c", "a b c"),
            ("{{/* a comment */}}x", "x"),
            ("{{\"}}\"}}", "}}"),
            ("{{len .Config.Cmd}}\\t{{truncate .Name 2}}", "2\t/c"),
            ("{{range split \"a:b\" \":\"}}{{.}};{{end}}", "a;b;"),
        ];
        for (t, want) in cases {
            assert_eq!(render(t, &d), want, "{t}");
        }
    }

    #[test]
    fn bad_templates_and_fields_are_errors() {
        assert!(GoTemplate::parse("{{.Name").is_err());
        assert!(GoTemplate::parse("{{if}}").is_err());
        assert!(GoTemplate::parse("{{nosuchfunc .X}}").is_err());
        let t = GoTemplate::parse("{{.Nope}}").unwrap();
        let e = t.render(&json!({"Name": "x"})).unwrap_err().to_string();
        assert_eq!(e, "template: map has no entry for key \"Nope\"");
    }

    #[test]
    fn list_formats() {
        assert_eq!(ListFormat::parse("table").unwrap(), ListFormat::Table);
        assert_eq!(ListFormat::parse("json").unwrap(), ListFormat::Json);
        assert_eq!(
            ListFormat::parse("table {{.ID}}").unwrap(),
            ListFormat::Template {
                table: true,
                source: "{{.ID}}".into()
            }
        );
        assert_eq!(
            ListFormat::parse("{{.ID}}").unwrap(),
            ListFormat::Template {
                table: false,
                source: "{{.ID}}".into()
            }
        );
        assert!(ListFormat::parse("{{.ID").is_err());
    }
}
