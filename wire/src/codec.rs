//! A small length-prefixed binary encoding shared by the request and the status record.
//!
//! Integers are little-endian; byte strings are a u32 length then the bytes; lists are a u32
//! count then the items. Byte strings stay bytes: argv, environment and paths need not be UTF-8.

use std::fmt;

/// Why a message could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside the named field.
    Truncated(&'static str),
    /// The input does not start with the expected magic bytes.
    BadMagic,
    /// The message comes from a different version of sekexe.
    BadVersion { found: u32, expected: u32 },
    /// A field holds a value outside its range.
    BadValue(&'static str),
    /// Bytes are left after the last field.
    Trailing(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated(what) => write!(f, "truncated in field '{what}'"),
            DecodeError::BadMagic => write!(f, "not a sekexe message (bad magic)"),
            DecodeError::BadVersion { found, expected } => write!(
                f,
                "format version {found}, expected {expected}: the launcher and guest-init come from different sekexe builds"
            ),
            DecodeError::BadValue(what) => write!(f, "invalid value in field '{what}'"),
            DecodeError::Trailing(n) => write!(f, "{n} unexpected bytes after the last field"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Builds an encoded message.
#[derive(Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub fn new(magic: &[u8], version: u32) -> Self {
        let mut e = Encoder { buf: Vec::new() };
        e.buf.extend_from_slice(magic);
        e.u32(version);
        e
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(v as u8)
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).expect("a field over 4 GiB");
        self.u32(len);
        self.buf.extend_from_slice(v);
        self
    }

    pub fn list<T: AsRef<[u8]>>(&mut self, items: &[T]) -> &mut Self {
        let count = u32::try_from(items.len()).expect("a list over 4G items");
        self.u32(count);
        for item in items {
            self.bytes(item.as_ref());
        }
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an encoded message field by field.
pub struct Decoder<'a> {
    data: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// Checks the magic and the version, and positions the decoder after them.
    pub fn new(data: &'a [u8], magic: &[u8], version: u32) -> Result<Self, DecodeError> {
        if data.len() < magic.len() || &data[..magic.len()] != magic {
            return Err(DecodeError::BadMagic);
        }
        let mut d = Decoder {
            data: &data[magic.len()..],
        };
        let found = d.u32("version")?;
        if found != version {
            return Err(DecodeError::BadVersion {
                found,
                expected: version,
            });
        }
        Ok(d)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.data.len() < n {
            return Err(DecodeError::Truncated(what));
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::BadValue(what)),
        }
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)? as usize;
        Ok(self.take(len, what)?.to_vec())
    }

    pub fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        String::from_utf8(self.bytes(what)?).map_err(|_| DecodeError::BadValue(what))
    }

    pub fn list(&mut self, what: &'static str) -> Result<Vec<Vec<u8>>, DecodeError> {
        let count = self.u32(what)? as usize;
        // Every item takes at least its 4-byte length, so a hostile count cannot make this
        // reserve more than the input's size.
        let mut items = Vec::with_capacity(count.min(self.data.len() / 4));
        for _ in 0..count {
            items.push(self.bytes(what)?);
        }
        Ok(items)
    }

    /// Bytes not read yet (to bound allocations by what the input can hold).
    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    /// Fails if anything is left: a longer message is a different format, not ours.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.data.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_kind() {
        let mut e = Encoder::new(b"TEST", 7);
        e.u8(9)
            .bool(true)
            .u32(0xdead_beef)
            .u64(u64::MAX)
            .bytes(b"\0\xff")
            .list(&[b"a".as_slice(), b"", b"c d"]);
        let data = e.finish();
        let mut d = Decoder::new(&data, b"TEST", 7).unwrap();
        assert_eq!(d.u8("a").unwrap(), 9);
        assert!(d.bool("b").unwrap());
        assert_eq!(d.u32("c").unwrap(), 0xdead_beef);
        assert_eq!(d.u64("d").unwrap(), u64::MAX);
        assert_eq!(d.bytes("e").unwrap(), b"\0\xff");
        assert_eq!(
            d.list("f").unwrap(),
            vec![b"a".to_vec(), vec![], b"c d".to_vec()]
        );
        d.finish().unwrap();
    }

    #[test]
    fn rejects_wrong_magic_version_and_trailing_bytes() {
        let data = Encoder::new(b"TEST", 1).finish();
        assert_eq!(
            Decoder::new(&data, b"NOPE", 1).err(),
            Some(DecodeError::BadMagic)
        );
        assert_eq!(
            Decoder::new(&data, b"TEST", 2).err(),
            Some(DecodeError::BadVersion {
                found: 1,
                expected: 2
            })
        );
        let mut longer = data.clone();
        longer.push(0);
        let d = Decoder::new(&longer, b"TEST", 1).unwrap();
        assert_eq!(d.finish(), Err(DecodeError::Trailing(1)));
    }

    #[test]
    fn hostile_lengths_fail_without_allocating() {
        let mut e = Encoder::new(b"TEST", 1);
        e.u32(u32::MAX); // a list claiming 4G items, with no items behind it
        let data = e.finish();
        let mut d = Decoder::new(&data, b"TEST", 1).unwrap();
        assert_eq!(d.list("argv"), Err(DecodeError::Truncated("argv")));

        let mut e = Encoder::new(b"TEST", 1);
        e.u32(1000).u8(1); // a byte string claiming 1000 bytes, with one
        let data = e.finish();
        let mut d = Decoder::new(&data, b"TEST", 1).unwrap();
        assert_eq!(d.bytes("cwd"), Err(DecodeError::Truncated("cwd")));
    }

    #[test]
    fn bool_accepts_only_zero_and_one() {
        let mut e = Encoder::new(b"TEST", 1);
        e.u8(2);
        let data = e.finish();
        let mut d = Decoder::new(&data, b"TEST", 1).unwrap();
        assert_eq!(d.bool("tty"), Err(DecodeError::BadValue("tty")));
    }
}
