//! The session table: every open connection by its poll token, with the per-address counts the
//! admission limits need. The event loop asks it who may come in and where a token's connection
//! is; it never touches the slots' storage itself (sozu keeps the same split: `SessionManager`
//! apart from `Server`).

use crate::conn::Conn;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// One connection and what the loop tracks about it between turns.
#[derive(Debug)]
pub struct Slot {
    /// The connection.
    pub conn: Conn,
    /// The earliest deadline entry this connection has in the timer heap.
    pub armed: Option<Instant>,
    /// Waiting in the loop's fan-out write lane (`WriteQueue`): its output is the loop's to write.
    pub dirty: bool,
    /// Queued in the loop's list of connections to read again at the start of the next turn.
    pub reread: bool,
}

/// Why a new connection is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` are open.
    Full,
    /// Its address has its share open already.
    PerAddress(u32),
}

/// Connections by token; a token is reused once its connection is gone.
#[derive(Debug, Default)]
pub struct Sessions {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    open: usize,
    per_ip: HashMap<IpAddr, u32>,
}

impl Sessions {
    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.open
    }

    /// One past the highest token ever handed out (the range to walk for a sweep).
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Whether one more connection from `ip` fits under `total` and `per_address`.
    pub fn admits(&self, ip: IpAddr, total: usize, per_address: usize) -> Result<(), Refusal> {
        let from_ip = self.per_ip.get(&ip).copied().unwrap_or(0);
        if self.open >= total {
            return Err(Refusal::Full);
        }
        if from_ip as usize >= per_address {
            return Err(Refusal::PerAddress(from_ip));
        }
        Ok(())
    }

    /// A free token for a connection about to be registered; give it back with [`Sessions::fill`]
    /// or [`Sessions::unreserve`].
    pub fn reserve(&mut self) -> usize {
        self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        })
    }

    /// Returns a reserved token that was not used (its registration failed).
    pub fn unreserve(&mut self, t: usize) {
        debug_assert!(self.slots[t].is_none());
        self.free.push(t);
    }

    /// Puts a connection in its reserved slot and counts it.
    pub fn fill(&mut self, t: usize, conn: Conn) {
        debug_assert!(self.slots[t].is_none());
        *self.per_ip.entry(conn.ip).or_default() += 1;
        self.open += 1;
        self.slots[t] = Some(Slot { conn, armed: None, dirty: false, reread: false });
    }

    /// The slot of token `t`, if a connection holds it.
    pub fn get_mut(&mut self, t: usize) -> Option<&mut Slot> {
        self.slots.get_mut(t).and_then(Option::as_mut)
    }

    /// Takes the connection out of the table and frees its token.
    pub fn remove(&mut self, t: usize) -> Option<Slot> {
        let slot = self.slots.get_mut(t).and_then(Option::take)?;
        if let Some(n) = self.per_ip.get_mut(&slot.conn.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&slot.conn.ip);
            }
        }
        self.open -= 1;
        self.free.push(t);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::config::Config;

    /// A connection on a real loopback socket (the table never reads it).
    fn conn(app: &App, ip: IpAddr, listener: &std::net::TcpListener) -> Conn {
        let sock = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        Conn::new(0, mio::net::TcpStream::from_std(sock), ip, 1, app)
    }

    #[test]
    fn counts_per_address_and_frees_tokens_for_reuse() {
        let poll = mio::Poll::new().unwrap();
        let app = App::new(Config::default_embedded(), Default::default(), poll.registry().try_clone().unwrap());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut s = Sessions::default();
        assert_eq!(s.admits(a, 3, 2), Ok(()));
        let t0 = s.reserve();
        s.fill(t0, conn(&app, a, &listener));
        let t1 = s.reserve();
        s.fill(t1, conn(&app, a, &listener));
        assert_eq!(s.admits(a, 3, 2), Err(Refusal::PerAddress(2)));
        assert_eq!(s.admits(b, 3, 2), Ok(()));
        let t2 = s.reserve();
        s.fill(t2, conn(&app, b, &listener));
        assert_eq!(s.admits(b, 3, 2), Err(Refusal::Full));
        assert_eq!((s.open(), s.capacity()), (3, 3));

        assert!(s.remove(t0).is_some());
        assert!(s.remove(t0).is_none(), "a token is freed once");
        assert!(s.get_mut(t0).is_none());
        assert_eq!(s.admits(a, 3, 2), Ok(()));
        assert_eq!(s.reserve(), t0, "the freed token is handed out again");
        s.unreserve(t0);
        assert_eq!(s.reserve(), t0);
        assert_eq!(s.capacity(), 3);
        assert_eq!(s.open(), 2);
    }
}
