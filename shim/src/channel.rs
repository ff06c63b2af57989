//! The typed protocol between the shim and the container's init (youki's
//! `process/channel.rs` habit): one `SOCK_SEQPACKET` socketpair, one JSON message per
//! packet, and a message type per direction so neither side can send the other's.
//!
//! EOF means the other side is gone. The shim relies on that after `Start`: the child's
//! end is close-on-exec, so a successful `execve` closes it and the shim reads EOF, while a
//! failed one sends an [`ChildMessage::Error`] first.
//!
//! One message may carry a file descriptor (`SCM_RIGHTS`): the master of a terminal the
//! container process opened in its own devpts, handed to the shim.

use std::io::{IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::sys::socket::{
    self, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest message: an error text with a path or two in it.
const MAX_MESSAGE: usize = 64 * 1024;

/// From the container side (the intermediate process, then the init) to the shim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChildMessage {
    /// The intermediate process cloned the container process (the init, or an exec
    /// process); this is its pid in the shim's pid namespace.
    Pid(i32),
    /// The master of the process's terminal, sent as the message's fd.
    Console,
    /// The process is set up and waits for [`ParentMessage::Start`].
    Ready,
    /// Setup or exec failed; the text says which step and why.
    Error(String),
}

/// From the shim to the container process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParentMessage {
    /// The process is in the container's cgroup: it may go on (the init unshares its
    /// cgroup namespace now).
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
        self.send_inner(msg, None)
    }

    /// Sends one message with a file descriptor attached.
    pub fn send_with_fd(&self, msg: &Out, fd: BorrowedFd<'_>) -> Result<()> {
        self.send_inner(msg, Some(fd))
    }

    fn send_inner(&self, msg: &Out, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let buf =
            serde_json::to_vec(msg).map_err(|e| Error::Protocol(format!("encode message: {e}")))?;
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsgs: Vec<ControlMessage<'_>> = raw
            .as_ref()
            .map(|r| ControlMessage::ScmRights(r))
            .into_iter()
            .collect();
        loop {
            match socket::sendmsg::<()>(
                self.fd.as_raw_fd(),
                &[IoSlice::new(&buf)],
                &cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(nix::Error::EINTR) => continue,
                Err(e) => return Err(Error::sys("send on the init channel", e)),
            }
        }
    }

    /// Receives one message; `None` when the peer closed its end. A file descriptor sent
    /// with it is closed: use [`Channel::recv_with_fd`] where one is expected.
    pub fn recv(&self) -> Result<Option<In>> {
        Ok(self.recv_with_fd()?.map(|(msg, _)| msg))
    }

    /// Receives one message and the file descriptor sent with it, if any (close-on-exec).
    pub fn recv_with_fd(&self) -> Result<Option<(In, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (n, fds) = loop {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(msg) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = msg.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(raw) = c {
                                // SAFETY: the kernel installed these fds for us just now;
                                // nothing else owns them.
                                fds.extend(
                                    raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }),
                                );
                            }
                        }
                    }
                    break (msg.bytes, fds);
                }
                Err(nix::Error::EINTR) => continue,
                // The peer's end closed while a message was unread.
                Err(nix::Error::ECONNRESET) => return Ok(None),
                Err(e) => return Err(Error::sys("receive on the init channel", e)),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| Error::Protocol(format!("decode message: {e}")))?;
        Ok(Some((msg, fds.into_iter().next())))
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
        child.send(&ChildMessage::Pid(42)).unwrap();
        child
            .send(&ChildMessage::Error("exec: \"x\": not found".into()))
            .unwrap();
        assert_eq!(parent.recv().unwrap(), Some(ChildMessage::Pid(42)));
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

    #[test]
    fn a_file_descriptor_crosses_with_its_message() {
        let (parent, child) = pair().unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        child
            .send_with_fd(&ChildMessage::Console, w.as_fd())
            .unwrap();
        drop(w);
        let (msg, fd) = parent.recv_with_fd().unwrap().unwrap();
        assert_eq!(msg, ChildMessage::Console);
        let fd = fd.expect("an fd");
        nix::unistd::write(&fd, b"x").unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(nix::unistd::read(&r, &mut buf).unwrap(), 1);
        child.send(&ChildMessage::Ready).unwrap();
        assert!(matches!(
            parent.recv_with_fd().unwrap(),
            Some((ChildMessage::Ready, None))
        ));
    }
}
