//! The ctl language: the commands a group's `ctl` file accepts and the text it reads as.
//!
//! One command per line; blank lines and `#` comments are ignored, so what reading `ctl`
//! prints can be written back unchanged. A whole write is parsed before anything is applied:
//! one bad line rejects the write and changes nothing.

use super::config::{DataMode, Depth, Frame, GroupConfig, Replay, WriteMode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Data(DataMode),
    Replay(Replay),
    Depth(Depth),
    Write(WriteMode),
    Frame(Frame),
    /// Empty the history of every stream in the group.
    Clear,
}

impl Command {
    /// Applies a configuration command; false for `clear`, which changes history instead.
    pub fn configure(self, config: &mut GroupConfig) -> bool {
        match self {
            Command::Data(data) => config.data = data,
            Command::Replay(replay) => config.replay = replay,
            Command::Depth(depth) => config.depth = depth,
            Command::Write(write) => config.write = write,
            Command::Frame(frame) => config.frame = frame,
            Command::Clear => return false,
        }
        true
    }
}

/// Why a ctl write was refused: the line number (from 1) and what was wrong with it.
#[derive(Debug, PartialEq, Eq)]
pub struct CtlError {
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for CtlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// The most of a refusal's reason an error comment keeps: a bad word is quoted in it, and a
/// ctl write may be 1 MiB long.
const ERROR_REASON_MAX: usize = 200;

/// The comment line that tells a writer why its ctl write was refused, at the end of its
/// next reads of `ctl`. Being a comment, it is ignored when what `ctl` printed is written
/// back.
pub fn error_comment(reason: &str) -> String {
    match reason.char_indices().nth(ERROR_REASON_MAX) {
        Some((cut, _)) => format!("# error: {}...\n", &reason[..cut]),
        None => format!("# error: {reason}\n"),
    }
}

/// Parses every command of a ctl write, or reports the first bad line.
pub fn parse(text: &[u8]) -> Result<Vec<Command>, CtlError> {
    let text =
        std::str::from_utf8(text).map_err(|_| CtlError { line: 1, reason: "not UTF-8 text".into() })?;
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |reason: String| CtlError { line: index + 1, reason };
        let words: Vec<&str> = line.split_whitespace().collect();
        let command = match words.as_slice() {
            ["data", mode] => Command::Data(
                DataMode::parse(mode)
                    .ok_or_else(|| fail(format!("data takes message, coalesce or static, not {mode:?}")))?,
            ),
            ["write", mode] => Command::Write(
                WriteMode::parse(mode)
                    .ok_or_else(|| fail(format!("write takes nonblock, one or all, not {mode:?}")))?,
            ),
            ["frame", mode] => Command::Frame(
                Frame::parse(mode)
                    .ok_or_else(|| fail(format!("frame takes write or close, not {mode:?}")))?,
            ),
            ["replay", mode] => Command::Replay(
                Replay::parse(mode)
                    .ok_or_else(|| fail(format!("replay takes off, last or all, not {mode:?}")))?,
            ),
            ["depth", n] => Command::Depth(
                Depth::parse(n)
                    .ok_or_else(|| fail(format!("depth takes a count or a size such as 64K, not {n:?}")))?,
            ),
            ["clear"] => Command::Clear,
            [word, ..] if ["data", "replay", "depth", "write", "frame", "clear"].contains(word) => {
                return Err(fail(format!("wrong number of arguments to {word}")));
            }
            [word, ..] => return Err(fail(format!("unknown command {word:?}"))),
            [] => unreachable!("blank lines were skipped"),
        };
        commands.push(command);
    }
    Ok(commands)
}

/// A group's state as reported after its configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Status {
    pub streams: u64,
    pub groups: u64,
    pub readers: u64,
    pub messages: u64,
    pub bytes: u64,
}

/// The text a read of `ctl` returns: configuration as commands, then status as comments.
pub fn render(config: &GroupConfig, status: &Status) -> String {
    format!(
        "data {}\nreplay {}\ndepth {}\nwrite {}\nframe {}\n\
         # streams {}\n# groups {}\n# readers {}\n# messages {}\n# bytes {}\n",
        config.data,
        config.replay,
        config.depth,
        config.write,
        config.frame,
        status.streams,
        status.groups,
        status.readers,
        status.messages,
        status.bytes
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let commands = parse(b"data coalesce\nreplay last\n  depth 64K \n\n# note\nclear\n");
        assert_eq!(
            commands,
            Ok(vec![
                Command::Data(DataMode::Coalesce),
                Command::Replay(Replay::Last),
                Command::Depth(Depth::Bytes(64 << 10)),
                Command::Clear,
            ])
        );
        assert_eq!(parse(b"replay on"), Ok(vec![Command::Replay(Replay::All)]));
        assert_eq!(
            parse(b"write one\nframe close\ndata static"),
            Ok(vec![
                Command::Write(WriteMode::One),
                Command::Frame(Frame::Close),
                Command::Data(DataMode::Static)
            ])
        );
    }

    #[test]
    fn rejects_bad_lines_naming_them() {
        let cases: &[(&[u8], usize)] = &[
            (b"replay sometimes", 1),
            (b"data message\nfrobnicate", 2),
            (b"depth", 1),
            (b"depth 1 2", 1),
            (b"clear now", 1),
            (b"depth -5", 1),
            (b"\xff\xfe", 1),
        ];
        for (text, line) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!(error.line, *line, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn an_error_comment_is_one_bounded_comment_line_that_parses_as_nothing() {
        let error = parse(b"data message\nbogus\n").unwrap_err();
        assert_eq!(error_comment(&error.to_string()), "# error: line 2: unknown command \"bogus\"\n");
        let long = format!("x{}\ny", "é".repeat(100_000));
        let comment = error_comment(&parse(long.as_bytes()).unwrap_err().to_string());
        assert!(comment.len() < 4 * ERROR_REASON_MAX && comment.ends_with("...\n"), "{comment}");
        assert_eq!(comment.lines().count(), 1);
        assert_eq!(parse(comment.as_bytes()), Ok(Vec::new()));
    }

    #[test]
    fn what_it_renders_parses_back_to_the_same_config() {
        let config = GroupConfig {
            data: DataMode::Coalesce,
            replay: Replay::All,
            depth: Depth::Bytes(1 << 20),
            write: WriteMode::All,
            frame: Frame::Close,
        };
        let status = Status { streams: 2, groups: 1, readers: 3, messages: 4, bytes: 5 };
        let text = render(&config, &status);
        assert!(text.contains("# readers 3\n"), "{text}");
        let mut back = GroupConfig::default();
        for command in parse(text.as_bytes()).unwrap() {
            assert!(command.configure(&mut back), "render never says clear");
        }
        assert_eq!(back, config);
    }
}
