//! After a crash: bringing a group's `order` back in line with its streams.
//!
//! A write appends to its stream's log, then to its group's `order`, and the stream's record
//! carries the write's number in the group (`Stamp::group_seq`), which is the sequence number
//! of its `order` line. A daemon killed between the two appends leaves a message without
//! its `order` line; a power loss can also leave an `order` line whose message was lost.
//! Each log's recovery has already cut its torn tail, so what is left are such differences
//! at the ends: `order` lines at its end naming a stream that does not hold their write are
//! taken back, and the writes the streams hold past `order`'s end get their lines.

use super::tree::Tree;
use crate::storage::{Errno, Log, Message, Stamp};

impl Tree {
    /// Reconciles every group's `order` with its streams (after a restore), and logs what
    /// that changed.
    pub fn reconcile_orders(&self) {
        for ino in self.groups() {
            let Ok(group) = self.group(ino) else { continue };
            let Ok(streams) = self.streams(ino) else { continue };
            // The write path's lock order: the group, then its streams.
            let mut group_state = group.shared.state.lock();
            let states: Vec<_> = streams.iter().map(|(_, stream)| stream.state.lock()).collect();
            let members: Vec<Member> = states
                .iter()
                .map(|state| Member { name: state.order_name(), log: state.channel.log() })
                .collect();
            let path = format!("/{}", String::from_utf8_lossy(&self.path(ino).join(&b'/')));
            match reconcile_order(group_state.order.log_mut(), &members) {
                Ok(Reconciled { dropped: 0, added: 0 }) => {}
                Ok(done) => log::info!(
                    "{path}: order: {} lines written for messages that had none, {} lines of lost messages taken back",
                    done.added,
                    done.dropped
                ),
                Err(errno) => log::error!("{path}: order: cannot be reconciled with its streams: {errno}"),
            }
        }
    }
}

/// What reconciling changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// `order` lines taken back: their messages were lost.
    pub dropped: u64,
    /// `order` lines written for messages that had none.
    pub added: u64,
}

/// A stream of the group, by the name its `order` lines give it.
pub struct Member<'a> {
    pub name: &'a [u8],
    pub log: &'a dyn Log,
}

/// Makes `order` agree with the group's `streams` (see the module's comment).
pub fn reconcile_order(order: &mut dyn Log, streams: &[Member]) -> Result<Reconciled, Errno> {
    let mut done = Reconciled::default();
    let last_write = |member: &Member| -> Result<Option<u64>, Errno> {
        match member.log.next_seq().checked_sub(1).filter(|&seq| seq >= member.log.first_seq()) {
            Some(seq) => Ok(member.log.stamp(seq)?.map(|stamp| stamp.group_seq)),
            None => Ok(None),
        }
    };
    // Lines at the end for writes their stream does not hold.
    while let Some(seq) = order.next_seq().checked_sub(1).filter(|&seq| seq >= order.first_seq()) {
        let Some(line) = order.get(seq)? else { break };
        let name = line.strip_suffix(b"\n").unwrap_or(&line);
        let Some(member) = streams.iter().find(|m| m.name == name) else { break };
        if last_write(member)?.is_some_and(|last| last >= seq) {
            break;
        }
        order.unappend();
        done.dropped += 1;
    }
    // Writes past the end of `order`, in the order they were numbered.
    let mut missing: Vec<(u64, Stamp, &[u8])> = Vec::new();
    for member in streams {
        let mut seq = member.log.next_seq();
        while seq > member.log.first_seq() {
            seq -= 1;
            let Some(stamp) = member.log.stamp(seq)? else { break };
            if stamp.group_seq < order.next_seq() {
                break;
            }
            missing.push((stamp.group_seq, stamp, member.name));
        }
    }
    missing.sort_by_key(|&(group_seq, ..)| group_seq);
    for (_, stamp, name) in missing {
        order.append(Message::Owned([name, b"\n"].concat()), &stamp)?;
        done.added += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::memory::MemoryLog;

    /// Appends a write numbered `group_seq` to `log`.
    fn write(log: &mut MemoryLog, message: &[u8], group_seq: u64) {
        let stamp = Stamp { group_seq, ..Stamp::default() };
        log.append(Message::Borrowed(message), &stamp).unwrap();
    }

    /// `order` with a line per name, each numbered by its place.
    fn order_of(names: &[&str]) -> MemoryLog {
        let mut order = MemoryLog::default();
        for (seq, name) in names.iter().enumerate() {
            write(&mut order, format!("{name}\n").as_bytes(), seq as u64);
        }
        order
    }

    fn lines(order: &MemoryLog) -> Vec<String> {
        (order.first_seq()..order.next_seq())
            .map(|seq| String::from_utf8(order.get(seq).unwrap().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn a_message_without_its_order_line_gets_it_in_the_order_written() {
        let (mut a, mut b) = (MemoryLog::default(), MemoryLog::default());
        write(&mut a, b"a0", 0);
        write(&mut b, b"b1", 1);
        write(&mut b, b"b2", 2); // killed before its order line
        let mut order = order_of(&["a", "b"]);
        let members = [Member { name: b"a", log: &a }, Member { name: b"b", log: &b }];
        let done = reconcile_order(&mut order, &members).unwrap();
        assert_eq!(done, Reconciled { dropped: 0, added: 1 });
        assert_eq!(lines(&order), ["a\n", "b\n", "b\n"]);
        assert_eq!(order.stamp(2).unwrap().unwrap().group_seq, 2);
    }

    #[test]
    fn order_lines_whose_messages_were_lost_are_taken_back() {
        let (mut a, b) = (MemoryLog::default(), MemoryLog::default());
        write(&mut a, b"a0", 0);
        // Power lost: b's message 1 and a's message 2 never reached the disk; order did.
        let mut order = order_of(&["a", "b", "a"]);
        let members = [Member { name: b"a", log: &a }, Member { name: b"b", log: &b }];
        let done = reconcile_order(&mut order, &members).unwrap();
        assert_eq!(done, Reconciled { dropped: 2, added: 0 });
        assert_eq!(lines(&order), ["a\n"]);
    }

    #[test]
    fn a_consistent_group_and_lines_of_streams_gone_are_left_alone() {
        let mut a = MemoryLog::default();
        write(&mut a, b"a0", 0);
        write(&mut a, b"a2", 2);
        let mut order = order_of(&["a", "removed", "a", "renamed"]);
        let members = [Member { name: b"a", log: &a }];
        assert_eq!(reconcile_order(&mut order, &members).unwrap(), Reconciled::default());
        assert_eq!(lines(&order).len(), 4);
    }
}
