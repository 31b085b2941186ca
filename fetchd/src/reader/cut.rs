//! Cutting a complete staging file into chunks (FastCDC), storing them and recording the
//! track's manifest, in the background once its reader pauses, if the origin still has the
//! version that was read.

use std::sync::Arc;

use musicfs_ipc::{FetchError, TrackRef};

use super::{cache_err, lock, Layout, TrackReader, CUT_WHEN_QUIET};
use crate::catalog::Manifest;
use crate::chunks::chunk_hash;
use crate::partial::Partial;

impl TrackReader {
    /// Cuts a complete staging file into chunks in the background (once).
    pub(super) fn cut_if_complete(&self, track: TrackRef, partial: &Arc<Partial>) {
        if !partial.complete() || !lock(&self.cutting).insert(track) {
            return;
        }
        let (reader, partial) = (self.clone(), partial.clone());
        self.background(move || {
            // A reader still streaming through the file keeps the cores: cut once it pauses.
            loop {
                let idle = partial.idle_for();
                if idle >= CUT_WHEN_QUIET {
                    break;
                }
                std::thread::sleep(CUT_WHEN_QUIET - idle);
            }
            // The bytes are kept as the version the scan found only if the origin still has
            // that version: a file rewritten in place while it was read left a mix.
            let cut = match reader.replicas.unchanged(&partial.record) {
                Ok(()) => reader.cut(&partial),
                Err(e) => Err(e),
            };
            match cut {
                Ok(manifest) => {
                    let stored = reader.catalog.put_manifest(track.id, &manifest);
                    match stored {
                        Ok(()) => {
                            reader.forget_head(&partial.record);
                            let layout = (partial.record.clone(), Layout::new(manifest));
                            reader.layouts.insert(track, Arc::new(layout));
                        }
                        Err(e) => tracing::warn!("recording the chunks of a track failed: {e}"),
                    }
                }
                Err(FetchError::OriginChanged(why)) => tracing::warn!(
                    path = partial.record.location.path,
                    "read while it changed at its origin, so not cached: {why}"
                ),
                Err(e) => tracing::warn!(
                    path = partial.record.location.path,
                    "cutting the track into chunks failed: {e}"
                ),
            }
            lock(&reader.partials).map.remove(&track);
            reader.replicas.close(track.id);
            lock(&reader.cutting).remove(&track);
        });
    }

    /// Cuts a complete staging file into chunks, storing each, and returns its manifest.
    fn cut(&self, partial: &Partial) -> Result<Manifest, FetchError> {
        let mut chunks = Vec::new();
        let mut not_cached = (0, None);
        let read = crate::cdc::each_chunk(partial.file(), |chunk| {
            let hash = chunk_hash(chunk);
            // A cache left with only pinned chunks still gets the manifest: the chunk is
            // fetched again (and served uncached) when read.
            if let Err(e) = self.store.put(hash, chunk) {
                not_cached.0 += 1;
                not_cached.1.get_or_insert(e);
            }
            chunks.push((chunk.len() as u32, hash));
        })
        .map_err(cache_err)?;
        if read != partial.record.size {
            return Err(FetchError::Cache(format!(
                "the staging file holds {read} bytes, the track {}",
                partial.record.size
            )));
        }
        if let (n, Some(e)) = not_cached {
            tracing::warn!(
                path = partial.record.location.path,
                "{n} of {} chunks not cached (read from the origin when needed): {e}",
                chunks.len()
            );
        }
        Ok(Manifest {
            version: partial.record.version,
            chunks,
        })
    }
}
