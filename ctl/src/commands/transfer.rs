//! `load`, `save` and `import`: archives streamed to and from the engine in 1 MiB chunks, with
//! a progress bar when standard error is a terminal.

use std::future::Future;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::engine::v1::{
    images_import_request, ImagesImportOptions, ImagesImportRequest, ImagesLoadRequest,
    ImagesSaveRequest,
};
use berth_proto::types::v1::Platform;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_stream::wrappers::ReceiverStream;

use crate::cli::{Global, ImportArgs, LoadArgs, SaveArgs};
use crate::commands::images::client;
use crate::connection::call_error;

/// Bytes per message of a stream.
pub const CHUNK: usize = 1 << 20;

/// A progress bar on standard error when it is a terminal; hidden otherwise.
fn progress(total: Option<u64>, verb: &str, show: bool) -> ProgressBar {
    if !show || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(len) => (
            ProgressBar::new(len),
            "{msg} [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ),
        None => (
            ProgressBar::new_spinner(),
            "{msg} {spinner} {bytes} {bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Reads up to [`CHUNK`] bytes; fewer only at the end of the input.
async fn read_chunk(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    while filled < CHUNK {
        let n = r.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The input of `load` / `import`: a file (with its size) or standard input.
async fn open_input(
    path: Option<&Path>,
) -> anyhow::Result<(Box<dyn AsyncRead + Unpin + Send>, Option<u64>, String)> {
    match path {
        Some(p) => {
            let f = tokio::fs::File::open(p)
                .await
                .map_err(|e| anyhow::anyhow!("open {}: {e}", p.display()))?;
            let len = f.metadata().await.ok().map(|m| m.len());
            Ok((Box::new(f), len, p.display().to_string()))
        }
        None => Ok((Box::new(tokio::io::stdin()), None, "standard input".into())),
    }
}

/// Streams `reader` to a client-streaming call, `first` (if any) before the data. When
/// reading fails, the call is dropped — cancelled, so the engine stores nothing half-read —
/// and the read error is returned.
async fn upload<Req, Resp, Fut>(
    global: &Global,
    mut reader: impl AsyncRead + Unpin,
    source: &str,
    first: Option<Req>,
    wrap: impl Fn(Vec<u8>) -> Req,
    call: impl FnOnce(ReceiverStream<Req>) -> Fut,
    bar: &ProgressBar,
) -> anyhow::Result<Resp>
where
    Req: Send + 'static,
    Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Req>(2);
    let bar = bar.clone();
    let pump = async move {
        if let Some(first) = first {
            if tx.send(first).await.is_err() {
                return Ok(());
            }
        }
        loop {
            let chunk = read_chunk(&mut reader).await?;
            if chunk.is_empty() {
                return Ok(());
            }
            bar.inc(chunk.len() as u64);
            if tx.send(wrap(chunk)).await.is_err() {
                // The engine ended the call; its answer says why.
                return Ok(());
            }
        }
    };
    let call = call(ReceiverStream::new(rx));
    tokio::pin!(pump, call);
    let mut pumping = true;
    loop {
        tokio::select! {
            r = &mut call => return r.map(|r| r.into_inner()).map_err(|s| call_error(global, s)),
            p = &mut pump, if pumping => match p {
                Ok(()) => pumping = false,
                Err(e) => {
                    let e: std::io::Error = e;
                    anyhow::bail!("read {source}: {e}");
                }
            },
        }
    }
}

/// `load` / `image load`
pub async fn load(global: &Global, args: &LoadArgs) -> anyhow::Result<()> {
    if args.input.is_none() && std::io::stdin().is_terminal() {
        anyhow::bail!("requested load from stdin, but stdin is empty");
    }
    let (reader, total, source) = open_input(args.input.as_deref()).await?;
    let mut c = client(global).await?;
    let bar = progress(total, "Loading", !args.quiet);
    let resp = upload(
        global,
        reader,
        &source,
        None,
        |data| ImagesLoadRequest { data },
        |s| async move { c.load(s).await },
        &bar,
    )
    .await;
    bar.finish_and_clear();
    for image in resp?.images {
        if image.name.is_empty() {
            println!("Loaded image ID: {}", image.id);
        } else {
            println!("Loaded image: {}", image.name);
        }
    }
    Ok(())
}

/// Parses `os/arch[/variant]`.
pub fn platform(s: &str) -> anyhow::Result<Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] | [os, arch, _] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
            os: os.to_string(),
            architecture: arch.to_string(),
            variant: parts.get(2).map(|v| v.to_string()).unwrap_or_default(),
            ..Default::default()
        }),
        _ => anyhow::bail!("invalid platform {s:?}: expected os/arch[/variant], e.g. linux/arm64"),
    }
}

/// `import` / `image import`
pub async fn import(global: &Global, args: &ImportArgs) -> anyhow::Result<()> {
    use images_import_request::Msg;
    if args.file.contains("://") {
        anyhow::bail!(
            "importing from a URL is not supported: download {} first, then import the file",
            args.file
        );
    }
    let options = ImagesImportOptions {
        reference: args.reference.clone().unwrap_or_default(),
        changes: args.changes.clone(),
        message: args.message.clone().unwrap_or_default(),
        platform: args.platform.as_deref().map(platform).transpose()?,
    };
    let path = (args.file != "-").then(|| PathBuf::from(&args.file));
    let (reader, total, source) = open_input(path.as_deref()).await?;
    let mut c = client(global).await?;
    let bar = progress(total, "Importing", true);
    let first = ImagesImportRequest {
        msg: Some(Msg::Options(options)),
    };
    let resp = upload(
        global,
        reader,
        &source,
        Some(first),
        |data| ImagesImportRequest {
            msg: Some(Msg::Data(data)),
        },
        |s| async move { c.import(s).await },
        &bar,
    )
    .await;
    bar.finish_and_clear();
    println!("{}", resp?.image_id);
    Ok(())
}

/// Where `save` writes: a temporary file beside the target, renamed into place when the
/// archive is complete (so a failed save leaves no partial file); a target that is not a
/// regular file (a device, a pipe) directly; or standard output.
enum Sink {
    File {
        file: tokio::fs::File,
        temp: PathBuf,
        target: PathBuf,
    },
    Direct(tokio::fs::File),
    Stdout(tokio::io::Stdout),
}

impl Sink {
    async fn open(output: Option<&Path>) -> anyhow::Result<Sink> {
        let Some(target) = output else {
            if std::io::stdout().is_terminal() {
                anyhow::bail!(
                    "cowardly refusing to save to a terminal. Use the -o flag or redirect"
                );
            }
            return Ok(Sink::Stdout(tokio::io::stdout()));
        };
        if std::fs::metadata(target).is_ok_and(|m| !m.is_file()) {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .open(target)
                .await
                .map_err(|e| anyhow::anyhow!("open {}: {e}", target.display()))?;
            return Ok(Sink::Direct(file));
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "archive".into());
        let temp = dir.join(format!(".{name}.berthctl-{}", std::process::id()));
        let file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| anyhow::anyhow!("create {}: {e}", temp.display()))?;
        Ok(Sink::File {
            file,
            temp,
            target: target.to_path_buf(),
        })
    }

    fn writer(&mut self) -> &mut (dyn AsyncWrite + Unpin + Send) {
        match self {
            Sink::File { file, .. } | Sink::Direct(file) => file,
            Sink::Stdout(s) => s,
        }
    }

    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Sink::File {
                mut file,
                temp,
                target,
            } => {
                file.flush().await?;
                file.sync_all().await?;
                drop(file);
                tokio::fs::rename(&temp, &target)
                    .await
                    .map_err(|e| anyhow::anyhow!("write {}: {e}", target.display()))
            }
            Sink::Direct(mut f) => Ok(f.flush().await?),
            Sink::Stdout(mut s) => Ok(s.flush().await?),
        }
    }

    async fn abandon(self) {
        if let Sink::File { file, temp, .. } = self {
            drop(file);
            let _ = tokio::fs::remove_file(&temp).await;
        }
    }
}

/// `save` / `image save`
pub async fn save(global: &Global, args: &SaveArgs) -> anyhow::Result<()> {
    let mut sink = Sink::open(args.output.as_deref()).await?;
    let written = async {
        let mut stream = client(global)
            .await?
            .save(ImagesSaveRequest {
                references: args.images.clone(),
            })
            .await
            .map_err(|s| call_error(global, s))?
            .into_inner();
        let bar = progress(None, "Saving", args.output.is_some());
        let result = async {
            while let Some(m) = stream.message().await.map_err(|s| call_error(global, s))? {
                sink.writer().write_all(&m.data).await?;
                bar.inc(m.data.len() as u64);
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        bar.finish_and_clear();
        result
    }
    .await;
    match written {
        Ok(()) => sink.finish().await,
        Err(e) => {
            sink.abandon().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_full_until_the_end() {
        let data = vec![7u8; CHUNK + 10];
        let mut r = &data[..];
        assert_eq!(read_chunk(&mut r).await.unwrap().len(), CHUNK);
        assert_eq!(read_chunk(&mut r).await.unwrap().len(), 10);
        assert!(read_chunk(&mut r).await.unwrap().is_empty());
    }

    #[test]
    fn platforms_parse() {
        let p = platform("linux/arm64/v8").unwrap();
        assert_eq!(
            (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
            ("linux", "arm64", "v8")
        );
        assert!(platform("linux").is_err());
        assert!(platform("/amd64").is_err());
    }
}
