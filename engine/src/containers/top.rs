//! Top: the host's `ps` output, limited to the container's processes (as Docker does: the
//! ps options are the user's, the rows are those whose PID the shim lists).

use std::collections::HashSet;
use std::sync::Arc;

use berth_proto::engine::v1::{ContainersTopRequest, ContainersTopResponse, TopProcess};
use berth_proto::shim::v1::PidsRequest;

use super::kill::running_shim;
use super::Manager;
use crate::error::{Error, Result};

/// Splits `ps` output into titles and the rows of `pids`. The last column (the command)
/// may hold spaces; every other column is one word.
pub fn parse_ps(output: &str, pids: &HashSet<u32>) -> Result<ContainersTopResponse> {
    let mut lines = output.lines();
    let titles: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::InvalidArgument("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    for line in lines {
        let mut fields: Vec<String> = Vec::with_capacity(titles.len());
        let mut rest = line.trim_start();
        while fields.len() + 1 < titles.len() && !rest.is_empty() {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
        if !rest.is_empty() {
            fields.push(rest.to_string());
        }
        let pid = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            processes.push(TopProcess { fields });
        }
    }
    Ok(ContainersTopResponse { titles, processes })
}

/// `Containers.Top`
pub async fn top(m: &Arc<Manager>, req: ContainersTopRequest) -> Result<ContainersTopResponse> {
    let (_, mut task) = running_shim(m, &req.id).await?;
    let pids: HashSet<u32> = task
        .pids(PidsRequest {})
        .await
        .map_err(|s| Error::downstream("shim", s))?
        .into_inner()
        .processes
        .into_iter()
        .map(|p| p.pid)
        .collect();
    let args = if req.ps_args.trim().is_empty() {
        "-ef"
    } else {
        req.ps_args.as_str()
    };
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::io("run ps", e))?;
    if !out.status.success() {
        return Err(Error::InvalidArgument(format!(
            "ps {args}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_the_container_with_commands_whole() {
        let out = "UID        PID  PPID  C STIME TTY          TIME CMD\n\
                   root         1     0  0 10:00 ?        00:00:01 /sbin/init splash\n\
                   root      4242     1  0 10:01 pts/0    00:00:00 sleep 1000 now\n";
        let t = parse_ps(out, &HashSet::from([4242])).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(t.processes.len(), 1);
        assert_eq!(t.processes[0].fields[1], "4242");
        assert_eq!(t.processes[0].fields[7], "sleep 1000 now");
        assert!(parse_ps("USER COMMAND\n", &HashSet::new()).is_err());
    }
}
