//! An open SFTP file: positioned reads pipelined over the origin's connections.

use futures::stream::{FuturesUnordered, StreamExt};

use super::*;

/// An open origin file, read through handles on one or more connections.
pub(super) struct SftpFile {
    pub(super) shared: Arc<Shared>,
    pub(super) rel: String,
    pub(super) path: String,
    pub(super) len: u64,
    /// Its handles, at most one per connection.
    pub(super) handles: Mutex<Vec<FileRef>>,
    // Dropped last: handles are closed on the runtime.
    pub(super) rt: Arc<Driver>,
}

impl RangeRead for SftpFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.rt.block_on(self.read(offset, buf)).map_err(|f| {
            self.shared
                .io(f, "read", &format!("{} at {offset}", self.rel))
        })
    }
}

impl SftpFile {
    pub(super) async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Fail> {
        let timeout = self.shared.timeout;
        let mut lost = 0;
        loop {
            let deadline = Instant::now() + timeout;
            let pick = self.shared.acquire(deadline, Some(&self.path)).await;
            let (lease, handle) = self.choose(pick.map_err(Fail::Connect)?);
            let result = match handle {
                Some(handle) => read_pipelined(&lease.0, &handle, offset, buf, timeout).await,
                None => match self.open_on(&lease.0, deadline).await {
                    Ok(handle) => read_pipelined(&lease.0, &handle, offset, buf, timeout).await,
                    Err(fail) => Err(fail),
                },
            };
            match result {
                Err(fail) if lease.0.failed(&fail) && lost < self.shared.retries_when_lost() => {
                    lost += 1
                }
                done => return done,
            }
        }
    }

    /// Where to read: through a handle this file has on a connection no busier than the
    /// pool's pick, else on the pick (`None`: open a handle there first). So readers of files
    /// opened together spread over the connections made since.
    pub(super) fn choose(&self, pick: Lease) -> (Lease, Option<Arc<str>>) {
        let mut handles = lock(&self.handles);
        handles.retain(|h| h.conn.usable());
        let busy = |c: &Arc<Conn>| c.busy.load(Ordering::Relaxed);
        let mine = handles
            .iter()
            .min_by_key(|h| (busy(&h.conn), !Arc::ptr_eq(&h.conn, &pick.0)));
        match mine {
            Some(h) if Arc::ptr_eq(&h.conn, &pick.0) => (pick, Some(h.handle.clone())),
            // The pick's count includes its lease.
            Some(h) if busy(&h.conn) < busy(&pick.0) => (
                Lease::new(h.conn.clone(), Some(&self.path)),
                Some(h.handle.clone()),
            ),
            _ => (pick, None),
        }
    }

    pub(super) async fn open_on(
        &self,
        conn: &Arc<Conn>,
        deadline: Instant,
    ) -> Result<Arc<str>, Fail> {
        let open = conn
            .sftp
            .open(self.path.as_str(), OpenFlags::READ, FileAttributes::empty());
        let handle = req(conn, Budget::Until(deadline), open).await?.handle;
        let file = FileRef::new(conn.clone(), handle, &self.shared);
        let handle = file.handle.clone();
        lock(&self.handles).push(file);
        Ok(handle)
    }
}

/// Reads `buf.len()` bytes at `offset` (fewer only at the end of the file) with up to
/// [`IN_FLIGHT`] bytes of requests outstanding. Each answer must come within `timeout`.
///
/// The requests are polled here, on the calling thread, not spawned: a task on the runtime
/// would add a thread hand-off to each answer, which is most of a small read's latency.
pub(super) async fn read_pipelined(
    conn: &Arc<Conn>,
    handle: &Arc<str>,
    offset: u64,
    buf: &mut [u8],
    timeout: Duration,
) -> Result<usize, Fail> {
    // Pieces to ask for: (position in buf, length). A short answer asks for the rest.
    let mut todo = pieces(buf.len(), conn.request_len);
    let step = todo.front().map_or(1, |p| p.1);
    let mut eof = buf.len();
    let mut pending = FuturesUnordered::new();
    loop {
        while pending.len() < (IN_FLIGHT / step).max(1) {
            let Some((at, len)) = todo.pop_front() else {
                break;
            };
            if at < eof {
                let read = conn.sftp.read(&**handle, offset + at as u64, len as u32);
                pending.push(async move { (at, len, read.await) });
            }
        }
        let next = match conn.answer(timeout, pending.next()).await? {
            None => return Ok(eof),
            Some(next) => next,
        };
        match next {
            (at, len, Ok(data)) => {
                let n = data.data.len().min(len);
                buf[at..at + n].copy_from_slice(&data.data[..n]);
                if n == 0 {
                    eof = eof.min(at);
                } else if n < len {
                    todo.push_front((at + n, len - n));
                }
            }
            (at, _, Err(SftpError::Status(s))) if s.status_code == StatusCode::Eof => {
                eof = eof.min(at);
            }
            (_, _, Err(e)) => return Err(e.into()),
        }
    }
}

/// The requests a read of `len` bytes is asked in: (position, length), in order. Small reads
/// in [`SMALL_PIECE`]s (see there), others in pieces of the server's limit.
pub(super) fn pieces(len: usize, request_len: u32) -> VecDeque<(usize, usize)> {
    let mut step = (request_len as usize).max(1);
    if len <= SMALL_READ {
        step = step.min(SMALL_PIECE);
    }
    (0..len)
        .step_by(step)
        .map(|at| (at, step.min(len - at)))
        .collect()
}

/// A remote file handle, closed (without waiting) when dropped.
pub(super) struct FileRef {
    pub(super) conn: Arc<Conn>,
    pub(super) handle: Arc<str>,
    pub(super) spawner: tokio::runtime::Handle,
    pub(super) timeout: Duration,
}

impl FileRef {
    pub(super) fn new(conn: Arc<Conn>, handle: String, shared: &Shared) -> Self {
        conn.files.fetch_add(1, Ordering::Relaxed);
        let (spawner, timeout) = (shared.spawner.clone(), shared.timeout);
        let handle = handle.into();
        Self {
            conn,
            handle,
            spawner,
            timeout,
        }
    }
}

impl Drop for FileRef {
    fn drop(&mut self) {
        self.conn.files.fetch_sub(1, Ordering::Relaxed);
        if self.conn.usable() {
            let (conn, handle) = (self.conn.clone(), self.handle.to_string());
            let t = self.timeout;
            self.spawner
                .spawn(async move { timeout(t, conn.sftp.close(handle)).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_reads_go_out_in_consecutive_32_kib_pieces() {
        let limit = 255 * 1024;
        let got: Vec<_> = pieces(64 * 1024, limit).into_iter().collect();
        assert_eq!(got, [(0, 32 * 1024), (32 * 1024, 32 * 1024)]);
        let got: Vec<_> = pieces(40 * 1024, limit).into_iter().collect();
        assert_eq!(got, [(0, 32 * 1024), (32 * 1024, 8 * 1024)]);
        // A server that allows less than a piece is asked for no more than it allows.
        let got: Vec<_> = pieces(64 * 1024, 16 * 1024).into_iter().collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|&(_, len)| len == 16 * 1024));
    }

    #[test]
    fn large_reads_go_out_in_pieces_of_the_servers_limit() {
        let limit = 255 * 1024;
        let got: Vec<_> = pieces(1 << 20, limit).into_iter().collect();
        assert_eq!(got.len(), 5);
        assert!(got[..4].iter().all(|&(_, len)| len == limit as usize));
        assert_eq!(got[4], (4 * limit as usize, (1 << 20) - 4 * limit as usize));
        assert!(pieces(0, limit).is_empty());
    }
}
