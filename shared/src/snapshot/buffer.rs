//! The memory a snapshot is opened in.
//!
//! A 10M-license snapshot is over a gigabyte read at random: with 4 KiB pages
//! nearly every lookup also misses the TLB. The buffer is an anonymous
//! mapping the kernel is asked to back with transparent huge pages, which
//! takes that miss away (it is advice: where THP is off, plain pages work
//! the same). A mapping is page-aligned, as zero-copy access needs.

use std::io::{self, Read};
use std::ops::Deref;

use memmap2::{Advice, MmapMut};

/// Snapshot bytes ready for [`open`](super::open).
#[derive(Debug)]
pub struct SnapshotBuffer {
    map: MmapMut,
    len: usize,
}

impl SnapshotBuffer {
    pub fn from_slice(bytes: &[u8]) -> io::Result<Self> {
        let mut buffer = Self::zeroed(bytes.len())?;
        buffer.map[..bytes.len()].copy_from_slice(bytes);
        Ok(buffer)
    }

    /// Reads a snapshot of `len` bytes (a file's size) and checks nothing follows.
    pub fn read_exact(mut reader: impl Read, len: usize) -> io::Result<Self> {
        let mut buffer = Self::zeroed(len)?;
        reader.read_exact(&mut buffer.map[..len])?;
        if reader.read(&mut [0u8; 1])? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "snapshot grew while it was read",
            ));
        }
        Ok(buffer)
    }

    pub fn read_file(path: &std::path::Path) -> io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = usize::try_from(file.metadata()?.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "snapshot larger than memory")
        })?;
        Self::read_exact(file, len)
    }

    fn zeroed(len: usize) -> io::Result<Self> {
        // A mapping cannot be empty; an empty snapshot still gets a page.
        let map = MmapMut::map_anon(len.max(1))?;
        #[cfg(target_os = "linux")]
        let _ = map.advise(Advice::HugePage);
        Ok(Self { map, len })
    }
}

impl Deref for SnapshotBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.map[..self.len]
    }
}
