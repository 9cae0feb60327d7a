//! What a mount's prefix names in JetStream: the namespace's stream and subject, each
//! group's stream, each file's subject. Subjects name nodes by inode number (identical on
//! every mount, see `engine/upstream.rs`), so a rename changes no subject, and a name may
//! hold characters a subject cannot.

use crate::engine::Ino;

/// Which characters a prefix may have: it is part of stream names and subjects.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if prefix.is_empty() || prefix.len() > 32 || !prefix.chars().all(allowed) {
        return Err(format!("prefix {prefix:?}: 1 to 32 letters, digits, '-' or '_'"));
    }
    Ok(())
}

#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        Names { prefix: prefix.to_string() }
    }

    /// The stream of namespace changes.
    pub fn namespace_stream(&self) -> String {
        format!("{}_ns", self.prefix)
    }

    pub fn namespace_subject(&self) -> String {
        format!("{}.ns", self.prefix)
    }

    /// A group's stream.
    pub fn group_stream(&self, group: Ino) -> String {
        format!("{}_g{group}", self.prefix)
    }

    /// Every subject of a group's stream.
    pub fn group_subjects(&self, group: Ino) -> String {
        format!("{}.g{group}.*", self.prefix)
    }

    /// A file's subject: in its group's stream.
    pub fn file_subject(&self, group: Ino, file: Ino) -> String {
        format!("{}.g{group}.{file}", self.prefix)
    }

    /// Where replies to mount `mount`'s requests go (core NATS: a reply is not stored).
    pub fn reply_subject(&self, mount: &str) -> String {
        format!("{}.reply.{mount}", self.prefix)
    }

    /// A `deliver one` file's durable consumer.
    pub fn queue_consumer(&self, file: Ino) -> String {
        format!("{}_q{file}", self.prefix)
    }

    /// The file a subject names.
    pub fn file_of(subject: &str) -> Option<Ino> {
        subject.rsplit('.').next()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_subject_names_its_file_in_its_group_stream() {
        let names = Names::new("mq");
        assert_eq!(names.file_subject(7, 12), "mq.g7.12");
        assert_eq!(names.group_subjects(7), "mq.g7.*");
        assert_eq!(names.group_stream(7), "mq_g7");
        assert_eq!(Names::file_of("mq.g7.12"), Some(12));
        assert_eq!(Names::file_of("mq.ns"), None);
    }

    #[test]
    fn prefixes_are_subject_tokens_and_stream_names() {
        assert!(check_prefix("mqfs-test_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", &"x".repeat(33)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
