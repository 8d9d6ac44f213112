//! Layout pins, round trips and damage detection of every on-disk format.

use super::*;

#[test]
fn layouts_match_the_diagrams() {
    assert_eq!(
        (SH_BASE_OFFSET, SH_BASE_INDEX, SH_CREATED_MS, SH_CRC),
        (8, 16, 24, 32)
    );
    assert_eq!(
        (FH_PAYLOAD_LEN, FH_INDEX, FH_TERM, FH_KIND, FH_CRC),
        (4, 8, 16, 24, 28)
    );
    assert_eq!(
        (
            DP_SEGMENT,
            DP_POSITION,
            DP_NEXT_INDEX,
            DP_LAST_TERM,
            DP_END_OFFSET,
            DP_CRC
        ),
        (8, 16, 24, 32, 40, 48)
    );
    assert_eq!((SE_OFFSET, SE_POSITION, SE_HLC_FLOOR), (8, 16, 24));
    assert_eq!(
        (IF_ENTRY_COUNT, IF_SIZE, IF_ENTRIES_CRC, IF_CRC),
        (8, 56, 88, 92)
    );
    assert_eq!(
        (IH_COUNT, IH_BLOOM_WORDS, IH_BASE_OFFSET, IH_FINGERPRINT),
        (8, 16, 24, 32)
    );
}

#[test]
fn roundtrip_segment_header_and_rejects_flip() {
    let h = SegmentHeader {
        base_offset: 7,
        base_index: 9,
        created_ms: 11,
    };
    let mut b = h.encode();
    assert_eq!(SegmentHeader::decode(&b), Ok(h));
    b[9] ^= 1;
    assert!(SegmentHeader::decode(&b).is_err());
    assert!(SegmentHeader::decode(&b[..10]).is_err());
}

#[test]
fn roundtrip_durable_point_and_rejects_flip() {
    let p = DurablePoint {
        segment: 100,
        position: 4096,
        next_index: 17,
        last_term: 3,
        end_offset: 250,
    };
    let mut b = p.encode();
    assert_eq!(DurablePoint::decode(&b), Some(p));
    assert_eq!(DurablePoint::decode(&[0u8; DURABLE_SLOT_LEN]), None);
    b[20] ^= 4;
    assert_eq!(DurablePoint::decode(&b), None);
    assert!(
        DurablePoint { segment: 1, ..p }
            > DurablePoint {
                segment: 0,
                position: 9999,
                ..p
            },
        "points order by segment, then position"
    );
}

#[test]
fn roundtrip_control_frame_and_rejects_damage() {
    let payload = b"membership";
    let h = FrameHeader {
        payload_len: payload.len() as u32,
        index: 3,
        term: 2,
        kind: EntryKind::Control,
    };
    let mut frame = h.encode(payload).to_vec();
    frame.extend_from_slice(payload);
    assert_eq!(FrameHeader::check(&frame), Ok((h, None)));
    assert_eq!(FrameHeader::peek(&frame), Some(h));
    for i in 0..frame.len() {
        let mut f = frame.clone();
        f[i] ^= 0x10;
        assert!(FrameHeader::check(&f).is_err(), "flip at {i} undetected");
    }
    for cut in 0..frame.len() {
        assert!(FrameHeader::check(&frame[..cut]).is_err());
    }
    assert_eq!(FrameHeader::check(&[0u8; 40]), Err(FrameDamage::End));
}

#[test]
fn roundtrip_index_file() {
    let s = SegmentSummary {
        base_offset: 1,
        base_index: 2,
        last_index: 3,
        last_term: 4,
        end_offset: 5,
        size: 6,
        max_hlc: 7,
        created_ms: 8,
        last_append_ms: 9,
    };
    let mut entries = Vec::new();
    SparseEntry {
        index: 1,
        offset: 2,
        position: 3,
        hlc_floor: 4,
    }
    .encode_into(&mut entries);
    let file = encode_index_file(&entries, &s);
    let (got, count, crc) =
        decode_index_footer(&file[file.len() - INDEX_FOOTER_LEN..], file.len() as u64).unwrap();
    assert_eq!((got, count, crc), (s, 1, crc32fast::hash(&entries)));
    assert_eq!(SparseEntry::at(&entries, 0).position, 3);
    let mut bad = file.clone();
    bad[file.len() - 10] ^= 1;
    assert!(decode_index_footer(&bad[bad.len() - INDEX_FOOTER_LEN..], bad.len() as u64).is_err());
}

#[test]
fn ids_table_finds_exactly_what_was_put() {
    let id = |i: u32| id_prefix(blake3::hash(&i.to_le_bytes()).as_bytes());
    let mut ids: Vec<(u64, u32)> = (0..500u32).map(|i| (id(i), i)).collect();
    // A prefix collision: same first 8 bytes, different id.
    ids.push((ids[3].0, 999));
    let file = encode_ids_file(100, 1100, &mut ids.clone());
    let t = IdTable::parse(bytes::Bytes::from(file.clone()), 100, 1100).unwrap();
    assert_eq!(t.len(), 501);
    let mut out = Vec::new();
    t.candidates(ids[3].0, &mut out);
    assert_eq!(out, vec![3, 999]);
    let mut misses = 0;
    for i in 1000..2000u32 {
        out.clear();
        t.candidates(id(i), &mut out);
        misses += out.is_empty() as u32;
    }
    assert_eq!(misses, 1000);
    assert!(IdTable::parse(bytes::Bytes::from(file.clone()), 101, 1100).is_err());
    assert!(IdTable::parse(bytes::Bytes::from(file.clone()), 100, 1101).is_err());
    let mut bad = file;
    bad[44] ^= 1;
    assert!(IdTable::parse(bytes::Bytes::from(bad), 100, 1100).is_err());
}

#[test]
fn roundtrip_meta_and_rejects_damage() {
    let mut m = MetaFile {
        log_start_index: 5,
        log_start_offset: 50,
        recovery: Some(Checkpoint {
            segment: 50,
            position: 4096,
        }),
        kv: Default::default(),
    };
    m.kv.insert("vote".into(), vec![1, 2, 3]);
    m.kv.insert("applied".into(), vec![]);
    let b = m.encode();
    assert_eq!(MetaFile::decode(&b), Ok(m.clone()));
    for i in 0..b.len() {
        let mut c = b.clone();
        c[i] ^= 4;
        assert!(MetaFile::decode(&c).is_err(), "flip at {i}");
    }
    assert!(MetaFile::decode(&b[..b.len() - 1]).is_err());
    let none = MetaFile::default();
    assert_eq!(MetaFile::decode(&none.encode()), Ok(none));
}

#[test]
fn decoders_say_which_file_and_what_is_wrong() {
    let h = SegmentHeader {
        base_offset: 7,
        base_index: 9,
        created_ms: 11,
    }
    .encode();
    let kind = FileKind::SegmentHeader;
    assert_eq!(
        SegmentHeader::decode(&h[..10]),
        Err(FormatError::Short(kind))
    );
    let mut bad = h;
    bad[20] ^= 1;
    assert_eq!(SegmentHeader::decode(&bad), Err(FormatError::Crc(kind)));
    let mut bad = h;
    bad[0] ^= 1;
    assert_eq!(
        SegmentHeader::decode(&bad),
        Err(FormatError::BadMagic(kind))
    );
    assert_eq!(
        MetaFile::decode(&[0u8; 3]),
        Err(FormatError::Short(FileKind::Meta))
    );
    assert_eq!(
        FormatError::Crc(FileKind::Index).to_string(),
        "index file: crc mismatch"
    );
}

#[test]
fn a_stored_batch_frame_is_checked_by_length_and_crc() {
    let mut b = steme_protocol::BatchBuilder::with_capacity(512);
    for i in 0..3u8 {
        b.push_raw(&[1, i, 2, 3, 4, 5, 6, 7], &[9; 64]);
    }
    let payload = b.finish().to_vec();
    let h = FrameHeader {
        payload_len: payload.len() as u32,
        index: 5,
        term: 2,
        kind: EntryKind::Batch,
    };
    let mut frame = h.encode(&payload).to_vec();
    frame.extend_from_slice(&payload);
    let (got, batch) = FrameHeader::check_stored(&frame).expect("intact");
    assert_eq!((got, batch.map(|b| b.record_count)), (h, Some(3)));
    // Every byte of the frame is covered: header CRC, batch length, batch CRC.
    for i in 0..frame.len() {
        let mut f = frame.clone();
        f[i] ^= 0x20;
        assert!(
            FrameHeader::check_stored(&f).is_err(),
            "flip at {i} undetected"
        );
        assert!(FrameHeader::check(&f).is_err(), "flip at {i} undetected");
    }
}
