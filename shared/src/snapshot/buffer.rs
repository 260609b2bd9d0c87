//! The memory a snapshot is opened in.
//!
//! A 10M-license snapshot is over a gigabyte read at random: with 4 KiB pages
//! nearly every lookup also misses the TLB. The buffer is an anonymous
//! mapping the kernel is asked to back with transparent huge pages, which
//! takes that miss away (it is advice: where THP is off, plain pages work
//! the same). A mapping is page-aligned, as zero-copy access needs.

use std::io;
use std::ops::{Deref, DerefMut};

use memmap2::MmapMut;

/// Snapshot bytes ready for [`open`](super::open).
#[derive(Debug)]
pub struct SnapshotBuffer {
    map: MmapMut,
    len: usize,
}

impl SnapshotBuffer {
    pub fn from_slice(bytes: &[u8]) -> io::Result<Self> {
        let mut buffer = Self::zeroed(bytes.len())?;
        buffer.copy_from_slice(bytes);
        Ok(buffer)
    }

    /// `len` zero bytes for the caller to fill: a snapshot file is read
    /// straight into them (the edge does the reading; this crate does no I/O).
    pub fn zeroed(len: usize) -> io::Result<Self> {
        // A mapping cannot be empty; an empty snapshot still gets a page.
        let map = MmapMut::map_anon(len.max(1))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        Ok(Self { map, len })
    }
}

impl Deref for SnapshotBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}

impl DerefMut for SnapshotBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
    }
}
