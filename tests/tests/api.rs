//! The engine's API as a client sees it: versions, events, reflection, errors.

use std::time::Duration;

use berth_proto::engine::v1::system_client::SystemClient;
use berth_proto::engine::v1::volumes_client::VolumesClient;
use berth_proto::engine::v1::{EventsRequest, VersionRequest, VolumesListRequest};
use berth_rpc::Address;
use berth_tests::Engine;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

#[tokio::test]
async fn version_names_every_component() {
    let engine = Engine::start(&[]).await;
    let v = SystemClient::new(engine.channel().await)
        .version(VersionRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.api_version, "v1");
    for (c, name) in [
        (&v.engine, "berth-engine"),
        (&v.snapshotter, "berth-snapshotter"),
        (&v.builder, "berth-builder"),
    ] {
        let c = c.as_ref().unwrap();
        assert_eq!(c.name, name);
        assert!(!c.version.is_empty() && !c.rust_version.is_empty(), "{c:?}");
        assert!(c.error.is_empty(), "{c:?}");
    }
}

#[tokio::test]
async fn unimplemented_rpcs_name_themselves() {
    let engine = Engine::start(&[]).await;
    let err = VolumesClient::new(engine.channel().await)
        .list(VolumesListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("berth.engine.v1.Volumes/List"),
        "{}",
        err.message()
    );
}

#[tokio::test]
async fn events_replay_from_a_sequence_number_then_follow() {
    let engine = Engine::start(&[]).await;
    let mut client = SystemClient::new(engine.channel().await);
    let mut all = client
        .events(EventsRequest {
            since: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(5), all.next())
        .await
        .unwrap()
    {
        let e = e.unwrap();
        let done = e.r#type == "daemon" && e.action == "start";
        seen.push(e);
        if done {
            break;
        }
    }
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert!(seen
        .iter()
        .any(|e| e.r#type == "service" && e.action == "healthy"));

    // Resume from the last one seen, filtered: only the snapshotter's death arrives.
    let last = *seqs.last().unwrap();
    let mut filtered = client
        .events(EventsRequest {
            since: Some(last),
            filters: vec!["type=service".into(), "action=die".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let pid = engine.service_pid("snapshotter").unwrap();
    kill(Pid::from_raw(pid), Signal::SIGKILL).unwrap();
    let e = tokio::time::timeout(Duration::from_secs(10), filtered.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!((e.id.as_str(), e.action.as_str()), ("snapshotter", "die"));
    assert!(e.seq > last);
    assert_eq!(e.attributes["pid"], pid.to_string());
}

#[tokio::test]
async fn bad_event_filters_are_invalid_arguments() {
    let engine = Engine::start(&[]).await;
    let err = SystemClient::new(engine.channel().await)
        .events(EventsRequest {
            filters: vec!["colour=blue".into()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("colour"));
}

#[tokio::test]
async fn events_survive_an_engine_restart() {
    let mut engine = Engine::start(&[]).await;
    let before = {
        let info = SystemClient::new(engine.channel().await)
            .info(berth_proto::engine::v1::InfoRequest {})
            .await
            .unwrap()
            .into_inner();
        info.last_event_seq
    };
    engine.signal(Signal::SIGTERM);
    engine.wait_exit(Duration::from_secs(20)).await;
    let engine = Engine::start_in(engine, &[]).await;
    let mut stream = SystemClient::new(engine.channel().await)
        .events(EventsRequest {
            since: Some(before),
            filters: vec!["type=daemon".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut actions = Vec::new();
    while actions.len() < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(e.seq > before);
        actions.push(e.action);
    }
    assert_eq!(actions, ["stop", "start"]);
}

async fn reflected_services_v1(addr: &Address) -> Vec<String> {
    use v1::server_reflection_client::ServerReflectionClient;
    use v1::server_reflection_request::MessageRequest;
    use v1::server_reflection_response::MessageResponse;
    let channel = berth_rpc::connect::connect(addr, None).await.unwrap();
    let req = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    match stream.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn reflected_services_v1alpha(addr: &Address) -> Vec<String> {
    use v1alpha::server_reflection_client::ServerReflectionClient;
    use v1alpha::server_reflection_request::MessageRequest;
    use v1alpha::server_reflection_response::MessageResponse;
    let channel = berth_rpc::connect::connect(addr, None).await.unwrap();
    let req = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::once(req))
        .await
        .unwrap()
        .into_inner();
    match stream.next().await.unwrap().unwrap().message_response {
        Some(MessageResponse::ListServicesResponse(l)) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn reflection_v1_and_v1alpha_list_what_each_service_serves() {
    let engine = Engine::start(&[]).await;
    let engine_services = reflected_services_v1(&engine.address()).await;
    for want in [
        "berth.engine.v1.System",
        "berth.version.v1.Version",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            engine_services.iter().any(|s| s == want),
            "{want} missing: {engine_services:?}"
        );
    }
    assert!(!engine_services
        .iter()
        .any(|s| s.starts_with("berth.content")));
    assert_eq!(
        reflected_services_v1alpha(&engine.address()).await,
        engine_services
    );
    let snap = Address::Unix(engine.state.path().join("snapshotter.sock"));
    let snap_services = reflected_services_v1alpha(&snap).await;
    for want in [
        "berth.content.v1.Content",
        "berth.snapshots.v1.Snapshots",
        "berth.images.v1.Images",
    ] {
        assert!(
            snap_services.iter().any(|s| s == want),
            "{want} missing: {snap_services:?}"
        );
    }
    let builder = Address::Unix(engine.state.path().join("builder.sock"));
    assert!(reflected_services_v1(&builder)
        .await
        .iter()
        .any(|s| s == "berth.builder.v1.Builder"));
}

/// The status of a streaming call: its error, or that of its first message.
async fn first_status<R>(
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<R>>, tonic::Status>>,
) -> tonic::Code {
    match call.await {
        Err(s) => s.code(),
        Ok(r) => match r.into_inner().message().await {
            Err(s) => s.code(),
            Ok(_) => tonic::Code::Ok,
        },
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> tonic::Code {
    r.map(|_| ()).unwrap_err().code()
}

#[tokio::test]
async fn bad_attach_and_exec_requests_are_refused_clearly() {
    use berth_proto::engine::v1::containers_client::ContainersClient;
    use berth_proto::engine::v1::{
        containers_attach_request, containers_exec_request, AttachOptions, ContainersAttachRequest,
        ContainersExecRequest, ContainersPauseRequest, ContainersStatsRequest,
        ContainersTopRequest, ContainersUnpauseRequest, ExecOptions,
    };
    use tonic::Code;

    let engine = Engine::start(&[]).await;
    let c = ContainersClient::new(engine.channel().await);
    let attach = |msgs: Vec<ContainersAttachRequest>| {
        let mut c = c.clone();
        async move { first_status(c.attach(tokio_stream::iter(msgs))).await }
    };
    let exec = |msgs: Vec<ContainersExecRequest>| {
        let mut c = c.clone();
        async move { first_status(c.exec(tokio_stream::iter(msgs))).await }
    };
    let attach_opts = |o: AttachOptions| ContainersAttachRequest {
        msg: Some(containers_attach_request::Msg::Options(o)),
    };
    let exec_opts = |o: ExecOptions| ContainersExecRequest {
        msg: Some(containers_exec_request::Msg::Options(o)),
    };
    // No options first, or nothing at all.
    assert_eq!(attach(vec![]).await, Code::InvalidArgument);
    let stdin_first = ContainersAttachRequest {
        msg: Some(containers_attach_request::Msg::Stdin(b"x".to_vec())),
    };
    assert_eq!(attach(vec![stdin_first]).await, Code::InvalidArgument);
    assert_eq!(exec(vec![]).await, Code::InvalidArgument);
    // Bad detach keys, an empty command, unknown containers.
    let bad_keys = AttachOptions {
        id: "nope".into(),
        detach_keys: "ctrl-".into(),
        ..Default::default()
    };
    assert_eq!(
        attach(vec![attach_opts(bad_keys)]).await,
        Code::InvalidArgument
    );
    let unknown = AttachOptions {
        id: "nope".into(),
        ..Default::default()
    };
    assert_eq!(attach(vec![attach_opts(unknown)]).await, Code::NotFound);
    let no_cmd = ExecOptions {
        id: "nope".into(),
        ..Default::default()
    };
    assert_eq!(exec(vec![exec_opts(no_cmd)]).await, Code::InvalidArgument);
    let bad_keys = ExecOptions {
        id: "nope".into(),
        cmd: vec!["true".into()],
        detach_keys: "ctrl-1".into(),
        ..Default::default()
    };
    assert_eq!(exec(vec![exec_opts(bad_keys)]).await, Code::InvalidArgument);
    let unknown = ExecOptions {
        id: "nope".into(),
        cmd: vec!["true".into()],
        ..Default::default()
    };
    assert_eq!(exec(vec![exec_opts(unknown)]).await, Code::NotFound);
    let mut cc = c.clone();
    let id = || "nope".to_string();
    assert_eq!(
        code(cc.pause(ContainersPauseRequest { id: id() }).await),
        Code::NotFound
    );
    assert_eq!(
        code(cc.unpause(ContainersUnpauseRequest { id: id() }).await),
        Code::NotFound
    );
    let top = ContainersTopRequest {
        id: id(),
        ps_args: String::new(),
    };
    assert_eq!(code(cc.top(top).await), Code::NotFound);
    let stats = ContainersStatsRequest {
        id: id(),
        stream: false,
    };
    assert_eq!(code(cc.stats(stats).await), Code::NotFound);
}
