//! After a crash: bringing a group's `order` back in line with its streams.
//!
//! A write appends to its stream's log, then to its group's `order`, and the stream's record
//! carries the write's number in the group (`Stamp::group_seq`), which is the sequence number
//! of its `order` line. A daemon killed between the two appends leaves a message without
//! its `order` line; a power loss can also leave an `order` line whose message was lost.
//! Each log's recovery has already cut its torn tail, so what is left are such differences
//! at the ends: `order` lines at its end naming a stream that does not hold their write are
//! taken back, and the writes the streams hold past `order`'s end get their lines.

use crate::storage::{Errno, Log, Message, Stamp};

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
