//! The `meta` file: log start, recovery checkpoint and the Raft layer's opaque key/values
//! (drawn in `segments/FORMAT.md`).

use super::{
    FORMAT_VERSION, FileKind, FormatError, put_u16, put_u32, put_u64, u16_at, u32_at, u64_at,
};

pub const META_MAGIC: u32 = u32::from_le_bytes(*b"STMM");
const MH_MAGIC: usize = 0;
const MH_VERSION: usize = MH_MAGIC + size_of::<u32>();
const MH_RESERVED: usize = MH_VERSION + size_of::<u16>();
const MH_BODY_LEN: usize = MH_RESERVED + size_of::<u16>();
const MH_BODY_CRC: usize = MH_BODY_LEN + size_of::<u32>();
pub const META_HEADER_LEN: usize = MH_BODY_CRC + size_of::<u32>();
const _: () = assert!(META_HEADER_LEN == 16);
const MB_START_INDEX: usize = 0;
const MB_START_OFFSET: usize = MB_START_INDEX + size_of::<u64>();
const MB_RECOVERY_SEGMENT: usize = MB_START_OFFSET + size_of::<u64>();
const MB_RECOVERY_POSITION: usize = MB_RECOVERY_SEGMENT + size_of::<u64>();
const MB_KV_COUNT: usize = MB_RECOVERY_POSITION + size_of::<u64>();
const MB_FIXED_LEN: usize = MB_KV_COUNT + size_of::<u32>();

/// Where recovery may start: every byte of segment `segment` (a base offset) below
/// `position`, and every earlier segment, was durable and indexed when this was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub segment: u64,
    pub position: u64,
}

/// The decoded `meta` file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetaFile {
    pub log_start_index: u64,
    pub log_start_offset: u64,
    pub recovery: Option<Checkpoint>,
    pub kv: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MetaFile {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = vec![0u8; MB_FIXED_LEN];
        put_u64(&mut body, MB_START_INDEX, self.log_start_index);
        put_u64(&mut body, MB_START_OFFSET, self.log_start_offset);
        let (seg, pos) = self
            .recovery
            .map_or((u64::MAX, u64::MAX), |c| (c.segment, c.position));
        put_u64(&mut body, MB_RECOVERY_SEGMENT, seg);
        put_u64(&mut body, MB_RECOVERY_POSITION, pos);
        put_u32(&mut body, MB_KV_COUNT, self.kv.len() as u32);
        for (k, v) in &self.kv {
            body.extend_from_slice(&(k.len() as u16).to_le_bytes());
            body.extend_from_slice(k.as_bytes());
            body.extend_from_slice(&(v.len() as u32).to_le_bytes());
            body.extend_from_slice(v);
        }
        let mut out = vec![0u8; META_HEADER_LEN];
        put_u32(&mut out, MH_MAGIC, META_MAGIC);
        put_u16(&mut out, MH_VERSION, FORMAT_VERSION);
        put_u32(&mut out, MH_BODY_LEN, body.len() as u32);
        put_u32(&mut out, MH_BODY_CRC, crc32fast::hash(&body));
        out.extend_from_slice(&body);
        out
    }

    pub fn decode(b: &[u8]) -> Result<MetaFile, FormatError> {
        if b.len() < META_HEADER_LEN {
            return Err(FormatError::Short(FileKind::Meta));
        }
        if u32_at(b, MH_MAGIC) != META_MAGIC
            || u16_at(b, MH_VERSION) != FORMAT_VERSION
            || u16_at(b, MH_RESERVED) != 0
        {
            return Err(FormatError::BadMagic(FileKind::Meta));
        }
        let body = &b[META_HEADER_LEN..];
        if u32_at(b, MH_BODY_LEN) as usize != body.len() || body.len() < MB_FIXED_LEN {
            return Err(FormatError::Inconsistent(
                FileKind::Meta,
                "body length mismatch",
            ));
        }
        if crc32fast::hash(body) != u32_at(b, MH_BODY_CRC) {
            return Err(FormatError::Crc(FileKind::Meta));
        }
        let seg = u64_at(body, MB_RECOVERY_SEGMENT);
        let pos = u64_at(body, MB_RECOVERY_POSITION);
        let mut m = MetaFile {
            log_start_index: u64_at(body, MB_START_INDEX),
            log_start_offset: u64_at(body, MB_START_OFFSET),
            recovery: (seg != u64::MAX).then_some(Checkpoint {
                segment: seg,
                position: pos,
            }),
            kv: Default::default(),
        };
        let count = u32_at(body, MB_KV_COUNT);
        let mut at = MB_FIXED_LEN;
        for _ in 0..count {
            let take = |at: &mut usize, n: usize| -> Result<&[u8], FormatError> {
                let s = body.get(*at..*at + n).ok_or(FormatError::Inconsistent(
                    FileKind::Meta,
                    "an entry overruns the file",
                ))?;
                *at += n;
                Ok(s)
            };
            let klen = u16_at(take(&mut at, 2)?, 0) as usize;
            let key = std::str::from_utf8(take(&mut at, klen)?)
                .map_err(|_| FormatError::Inconsistent(FileKind::Meta, "a key is not UTF-8"))?;
            let key = key.to_owned();
            let vlen = u32_at(take(&mut at, 4)?, 0) as usize;
            let val = take(&mut at, vlen)?.to_vec();
            m.kv.insert(key, val);
        }
        if at != body.len() {
            return Err(FormatError::Inconsistent(FileKind::Meta, "trailing bytes"));
        }
        Ok(m)
    }
}
