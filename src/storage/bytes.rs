//! Shared message bytes: a range of a reference-counted buffer. A log hands the same buffer
//! to every reader of a message instead of a copy each; the last one to let go frees it.

use std::ops::{Deref, Range};
use std::sync::Arc;

#[derive(Clone, Default)]
pub struct Bytes {
    buffer: Arc<Vec<u8>>,
    range: Range<usize>,
}

impl Bytes {
    /// `range` of `buffer`, shared.
    pub fn shared(buffer: &Arc<Vec<u8>>, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= buffer.len(), "range outside the buffer");
        Bytes { buffer: buffer.clone(), range }
    }

    /// The bytes `from..to` of these (relative to their start).
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        assert!(range.start <= range.end && range.end <= self.len(), "slice outside the bytes");
        let start = self.range.start;
        Bytes { buffer: self.buffer.clone(), range: start + range.start..start + range.end }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Bytes {
        let range = 0..bytes.len();
        Bytes { buffer: Arc::new(bytes), range }
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.buffer[self.range.clone()]
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({:?})", String::from_utf8_lossy(self))
    }
}

impl PartialEq for Bytes {
    fn eq(&self, other: &Bytes) -> bool {
        **self == **other
    }
}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_the_buffer() {
        let buffer = Arc::new(b"hello world".to_vec());
        let world = Bytes::shared(&buffer, 6..11);
        assert_eq!(&*world, b"world");
        assert_eq!(&*world.slice(1..3), b"or");
        assert_eq!(Arc::strong_count(&buffer), 2);
    }
}
