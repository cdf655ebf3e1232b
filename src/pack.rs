//! Writing many new objects as one pack file (with its `.idx`) instead of one loose file
//! each, as `git fast-import` does. A batch enqueue of thousands of requests otherwise spends
//! most of its time creating and renaming small files.
//!
//! The pack holds whole objects (no deltas), in pack format v2 with an index of version 2:
//! the formats git reads natively. The pack is written before its index, and both are
//! renamed into place only when complete, so a reader never sees a partial pack; callers
//! point refs at the objects only after [`PackBuilder::write`] returned.

use std::io::Write;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::Kind;

/// Objects collected in memory, to be written as one pack.
#[derive(Default)]
pub struct PackBuilder {
    objects: Vec<(ObjectId, Kind, Vec<u8>)>,
    seen: std::collections::HashSet<ObjectId>,
}

impl PackBuilder {
    pub fn new() -> PackBuilder {
        PackBuilder::default()
    }

    /// Add an object given its kind and serialised content; returns its id.
    pub fn add(&mut self, kind: Kind, data: Vec<u8>) -> ObjectId {
        let id = gix::objs::compute_hash(gix::hash::Kind::Sha1, kind, &data)
            .expect("hashing in memory cannot fail");
        if self.seen.insert(id) {
            self.objects.push((id, kind, data));
        }
        id
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Write the pack and its index under `objects_dir/pack/`. Returns the pack's path, or
    /// `None` when there was nothing to write.
    pub fn write(self, objects_dir: &Path) -> std::io::Result<Option<PathBuf>> {
        if self.objects.is_empty() {
            return Ok(None);
        }
        let mut pack = Vec::with_capacity(
            12 + self
                .objects
                .iter()
                .map(|(_, _, d)| d.len() / 2 + 32)
                .sum::<usize>(),
        );
        pack.extend_from_slice(b"PACK");
        pack.extend_from_slice(&2u32.to_be_bytes());
        pack.extend_from_slice(&(self.objects.len() as u32).to_be_bytes());
        // (id, offset, crc32) of every entry.
        let mut entries = Vec::with_capacity(self.objects.len());
        for (id, kind, data) in &self.objects {
            let offset = pack.len() as u64;
            let type_code: u8 = match kind {
                Kind::Commit => 1,
                Kind::Tree => 2,
                Kind::Blob => 3,
                Kind::Tag => 4,
            };
            let mut size = data.len() as u64;
            let mut byte = (type_code << 4) | (size & 0x0f) as u8;
            size >>= 4;
            while size > 0 {
                pack.push(byte | 0x80);
                byte = (size & 0x7f) as u8;
                size >>= 7;
            }
            pack.push(byte);
            let mut z = gix_zlib::stream::deflate::Write::new(
                Vec::with_capacity(data.len() / 2 + 16),
                gix_zlib::Compression::BEST_SPEED,
            );
            z.write_all(data)?;
            z.flush()?;
            pack.extend_from_slice(&z.into_inner());
            let crc = crc32fast::hash(&pack[offset as usize..]);
            entries.push((*id, offset, crc));
        }
        let pack_sum = sha1(&pack);
        pack.extend_from_slice(pack_sum.as_bytes());

        entries.sort_by_key(|e| e.0);
        let mut idx = Vec::with_capacity(8 + 1024 + entries.len() * 28 + 40);
        idx.extend_from_slice(&[0xff, b't', b'O', b'c']);
        idx.extend_from_slice(&2u32.to_be_bytes());
        let mut fanout = [0u32; 256];
        for (id, _, _) in &entries {
            fanout[id.as_bytes()[0] as usize] += 1;
        }
        let mut total = 0u32;
        for n in fanout {
            total += n;
            idx.extend_from_slice(&total.to_be_bytes());
        }
        for (id, _, _) in &entries {
            idx.extend_from_slice(id.as_bytes());
        }
        for (_, _, crc) in &entries {
            idx.extend_from_slice(&crc.to_be_bytes());
        }
        let mut large = Vec::new();
        for (_, offset, _) in &entries {
            if *offset < 0x8000_0000 {
                idx.extend_from_slice(&(*offset as u32).to_be_bytes());
            } else {
                idx.extend_from_slice(&(0x8000_0000u32 | large.len() as u32).to_be_bytes());
                large.push(*offset);
            }
        }
        for offset in large {
            idx.extend_from_slice(&offset.to_be_bytes());
        }
        idx.extend_from_slice(pack_sum.as_bytes());
        let idx_sum = sha1(&idx);
        idx.extend_from_slice(idx_sum.as_bytes());

        let dir = objects_dir.join("pack");
        std::fs::create_dir_all(&dir)?;
        let name = format!("pack-{pack_sum}");
        let final_pack = dir.join(format!("{name}.pack"));
        let mut tmp = tempfile::Builder::new()
            .prefix("tmp_pack_")
            .tempfile_in(&dir)?;
        tmp.write_all(&pack)?;
        tmp.persist(&final_pack).map_err(|e| e.error)?;
        let mut tmp = tempfile::Builder::new()
            .prefix("tmp_idx_")
            .tempfile_in(&dir)?;
        tmp.write_all(&idx)?;
        tmp.persist(dir.join(format!("{name}.idx")))
            .map_err(|e| e.error)?;
        Ok(Some(final_pack))
    }
}

fn sha1(data: &[u8]) -> ObjectId {
    let mut h = gix::hash::hasher(gix::hash::Kind::Sha1);
    h.update(data);
    h.try_finalize().expect("sha1 of bytes in memory")
}
