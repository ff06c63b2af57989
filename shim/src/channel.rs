//! The typed protocol between the shim and the container's init (youki's
//! `process/channel.rs` habit): one `SOCK_SEQPACKET` socketpair, one JSON message per
//! packet, and a message type per direction so neither side can send the other's.
//!
//! EOF means the other side is gone. The shim relies on that after `Start`: the child's
//! end is close-on-exec, so a successful `execve` closes it and the shim reads EOF, while a
//! failed one sends an [`ChildMessage::Error`] first.

use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest message: an error text with a path or two in it.
const MAX_MESSAGE: usize = 64 * 1024;

/// From the container side (the intermediate process, then the init) to the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMessage {
    /// The intermediate process cloned the init; this is its pid in the shim's pid
    /// namespace.
    InitPid(i32),
    /// The init set the container up and waits for [`ParentMessage::Start`].
    Ready,
    /// Setup or exec failed; the text says which step and why.
    Error(String),
}

/// From the shim to the init.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParentMessage {
    /// The init is in its cgroup: it may unshare its cgroup namespace and go on.
    CgroupJoined,
    /// Exec the container process.
    Start,
}

/// One end of the socketpair: sends `Out`, receives `In`.
#[derive(Debug)]
pub struct Channel<Out, In> {
    fd: OwnedFd,
    _types: PhantomData<fn(Out) -> In>,
}

/// The shim's end.
pub type ParentChannel = Channel<ParentMessage, ChildMessage>;
/// The container's end.
pub type ChildChannel = Channel<ChildMessage, ParentMessage>;

/// A connected pair, both ends close-on-exec.
pub fn pair() -> Result<(ParentChannel, ChildChannel)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::sys("socketpair for the init channel", e))?;
    Ok((Channel::new(a), Channel::new(b)))
}

impl<Out: Serialize, In: DeserializeOwned> Channel<Out, In> {
    fn new(fd: OwnedFd) -> Self {
        Channel {
            fd,
            _types: PhantomData,
        }
    }

    /// Sends one message. MSG_NOSIGNAL: a dead peer is an error, not a SIGPIPE.
    pub fn send(&self, msg: &Out) -> Result<()> {
        let buf =
            serde_json::to_vec(msg).map_err(|e| Error::Protocol(format!("encode message: {e}")))?;
        loop {
            match socket::send(self.fd.as_raw_fd(), &buf, MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys("send on the init channel", e)),
            }
        }
    }

    /// Receives one message; `None` when the peer closed its end.
    pub fn recv(&self) -> Result<Option<In>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::Error::EINTR) => continue,
                // The peer's end closed while a message was unread.
                Err(nix::Error::ECONNRESET) => return Ok(None),
                Err(e) => return Err(Error::sys("receive on the init channel", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Protocol(format!("decode message: {e}")))
    }

    /// The raw fd, for the list of fds a forked child keeps.
    pub fn raw_fd(&self) -> i32 {
        self.fd.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cross_and_eof_is_none() {
        let (parent, child) = pair().unwrap();
        child.send(&ChildMessage::InitPid(42)).unwrap();
        child
            .send(&ChildMessage::Error("exec: \"x\": not found".into()))
            .unwrap();
        assert_eq!(parent.recv().unwrap(), Some(ChildMessage::InitPid(42)));
        assert!(matches!(
            parent.recv().unwrap(),
            Some(ChildMessage::Error(_))
        ));
        parent.send(&ParentMessage::Start).unwrap();
        assert_eq!(child.recv().unwrap(), Some(ParentMessage::Start));
        drop(child);
        assert_eq!(parent.recv().unwrap(), None);
        assert!(parent.send(&ParentMessage::Start).is_err());
    }
}
