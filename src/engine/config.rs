//! A group's configuration: how its streams are read, replayed and bounded.

use std::fmt;

/// How a read is cut from the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// A read returns bytes of at most one message.
    Message,
    /// A read returns as many bytes as are available, across message boundaries.
    Coalesce,
    /// The stream reads like a regular file over its retained history: by offset, with an
    /// end of file. Decided when a file is opened.
    Static,
}

/// When a write returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteMode {
    /// At once, when the message is committed.
    NonBlock,
    /// Once at least one reader has received the whole message.
    One,
    /// Once every reader open at the commit has received it (or closed).
    All,
}

/// What makes a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Each write(2).
    Write,
    /// Everything written through one open file description, published when it is closed.
    Close,
}

/// What a reader that opens a non-empty stream gets first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Only messages written after the open.
    Off,
    /// The most recent retained message, then new ones.
    Last,
    /// Every retained message, then new ones.
    All,
}

/// A bound on a stream's retained messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Depth {
    Unlimited,
    Messages(u64),
    Bytes(u64),
}

impl Depth {
    /// Whether `messages` messages of `bytes` payload bytes exceed the bound.
    pub fn exceeded(self, messages: u64, bytes: u64) -> bool {
        match self {
            Depth::Unlimited => false,
            Depth::Messages(n) => messages > n,
            Depth::Bytes(n) => bytes > n,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub data: DataMode,
    pub replay: Replay,
    pub depth: Depth,
    pub write: WriteMode,
    pub frame: Frame,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            data: DataMode::Message,
            replay: Replay::Off,
            depth: Depth::Unlimited,
            write: WriteMode::NonBlock,
            frame: Frame::Write,
        }
    }
}

impl DataMode {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "message" => Some(DataMode::Message),
            "coalesce" => Some(DataMode::Coalesce),
            "static" => Some(DataMode::Static),
            _ => None,
        }
    }
}

impl WriteMode {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "nonblock" => Some(WriteMode::NonBlock),
            "one" => Some(WriteMode::One),
            "all" => Some(WriteMode::All),
            _ => None,
        }
    }
}

impl Frame {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "write" => Some(Frame::Write),
            "close" => Some(Frame::Close),
            _ => None,
        }
    }
}

impl Replay {
    pub fn parse(word: &str) -> Option<Self> {
        match word {
            "off" => Some(Replay::Off),
            "last" => Some(Replay::Last),
            // mq(4)'s spelling of `all`.
            "all" | "on" => Some(Replay::All),
            _ => None,
        }
    }
}

impl Depth {
    /// `0` (unlimited), a message count (`100`), or a size with a unit (`64K`, `16M`, `1G`,
    /// `512B`; binary multiples).
    pub fn parse(word: &str) -> Option<Self> {
        let unit_at = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
        let (digits, unit) = word.split_at(unit_at);
        let n: u64 = digits.parse().ok()?;
        let multiplier = match unit {
            "" => return Some(if n == 0 { Depth::Unlimited } else { Depth::Messages(n) }),
            "B" | "b" => 1,
            "K" | "k" => 1 << 10,
            "M" | "m" => 1 << 20,
            "G" | "g" => 1 << 30,
            _ => return None,
        };
        let bytes = n.checked_mul(multiplier)?;
        Some(if bytes == 0 { Depth::Unlimited } else { Depth::Bytes(bytes) })
    }
}

/// Parses a byte size such as `512M`, `2G`, `4096` (used by mount options too).
pub fn parse_size(word: &str) -> Option<u64> {
    match Depth::parse(word)? {
        Depth::Unlimited => Some(0),
        Depth::Messages(n) | Depth::Bytes(n) => Some(n),
    }
}

impl fmt::Display for DataMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DataMode::Message => "message",
            DataMode::Coalesce => "coalesce",
            DataMode::Static => "static",
        })
    }
}

impl fmt::Display for WriteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WriteMode::NonBlock => "nonblock",
            WriteMode::One => "one",
            WriteMode::All => "all",
        })
    }
}

impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Frame::Write => "write",
            Frame::Close => "close",
        })
    }
}

impl fmt::Display for Replay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Replay::Off => "off",
            Replay::Last => "last",
            Replay::All => "all",
        })
    }
}

impl fmt::Display for Depth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Depth::Unlimited => f.write_str("0"),
            Depth::Messages(n) => write!(f, "{n}"),
            Depth::Bytes(n) => {
                let units = [(1 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")];
                match units.iter().find(|(size, _)| n % size == 0) {
                    Some((size, unit)) => write!(f, "{}{unit}", n / size),
                    None => write!(f, "{n}B"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_parses_counts_and_sizes() {
        assert_eq!(Depth::parse("0"), Some(Depth::Unlimited));
        assert_eq!(Depth::parse("0M"), Some(Depth::Unlimited));
        assert_eq!(Depth::parse("100"), Some(Depth::Messages(100)));
        assert_eq!(Depth::parse("64K"), Some(Depth::Bytes(64 << 10)));
        assert_eq!(Depth::parse("16m"), Some(Depth::Bytes(16 << 20)));
        assert_eq!(Depth::parse("2G"), Some(Depth::Bytes(2 << 30)));
        assert_eq!(Depth::parse("10B"), Some(Depth::Bytes(10)));
        for bad in ["", "-1", "1.5M", "M", "12Q", "99999999999999999999", "17179869184G"] {
            assert_eq!(Depth::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn depth_prints_what_it_parses() {
        for word in ["0", "100", "64K", "16M", "2G", "1000B", "1025B"] {
            assert_eq!(Depth::parse(word).unwrap().to_string(), word);
        }
    }

    #[test]
    fn depth_bounds_by_its_own_unit() {
        assert!(!Depth::Unlimited.exceeded(u64::MAX, u64::MAX));
        assert!(Depth::Messages(2).exceeded(3, 0));
        assert!(!Depth::Messages(2).exceeded(2, 1 << 40));
        assert!(Depth::Bytes(10).exceeded(1, 11));
        assert!(!Depth::Bytes(10).exceeded(1000, 10));
    }
}
