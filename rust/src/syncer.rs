//! The spool's fdatasyncs, on threads that never take the GIL.
//!
//! Done through asyncio's thread pool, each group commit cost three GIL
//! handoffs (the pool thread takes it to start, gives it up in the syscall,
//! takes it back to hand the result over) and a wake-up of the event loop;
//! under single-event load that is about one fsync per request, and the
//! futexes alone cost 6.7 µs per request against 2.7 for the bare handler
//! (perf, benches/ingest_load.py). Here a sync is a message to a Rust
//! thread; when it ends, the thread queues its result and writes one byte
//! to a socket the event loop watches, so the loop learns of it in its next
//! poll, with no Python thread involved.

use std::fs::File;
use std::io::{self, Read, Write};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// A finished sync: its ticket and 0, or the `errno` it failed with.
pub type Finished = (u64, i32);

struct Request {
    fd: RawFd,
    ticket: u64,
}

pub struct Syncer {
    requests: Option<Sender<Request>>,
    wake: UnixStream,
    finished: Arc<Mutex<Vec<Finished>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Syncer {
    /// `threads` syncs can run at once (more requests wait their turn).
    pub fn new(threads: usize) -> io::Result<Self> {
        let (wake, waker) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        let (requests, queue) = mpsc::channel::<Request>();
        let queue = Arc::new(Mutex::new(queue));
        let finished = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..threads.max(1))
            .map(|i| {
                let (queue, finished, waker) =
                    (queue.clone(), finished.clone(), waker.try_clone()?);
                std::thread::Builder::new()
                    .name(format!("spool-fsync-{i}"))
                    .spawn(move || serve(&queue, &finished, waker))
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            requests: Some(requests),
            wake,
            finished,
            threads,
        })
    }

    /// Start an `fdatasync` of `fd`; its result comes from [`Self::finished`]
    /// under `ticket`. The caller keeps `fd` open until then.
    pub fn sync(&self, fd: RawFd, ticket: u64) {
        if let Some(requests) = &self.requests {
            // The threads live as long as the sender: a send cannot fail.
            let _ = requests.send(Request { fd, ticket });
        }
    }

    /// The socket that becomes readable when a sync has finished.
    pub fn fileno(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// The syncs finished since the last call.
    pub fn finished(&self) -> Vec<Finished> {
        // Read the wake-ups before taking the results: a result queued after
        // this take has its byte written after it, so the socket stays readable.
        let mut bytes = [0u8; 256];
        while matches!((&self.wake).read(&mut bytes), Ok(n) if n > 0) {}
        std::mem::take(&mut *lock(&self.finished))
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.requests = None; // each thread's recv then fails: it returns
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn serve(queue: &Mutex<Receiver<Request>>, finished: &Mutex<Vec<Finished>>, mut waker: UnixStream) {
    loop {
        let request = match lock(queue).recv() {
            Ok(request) => request,
            Err(_) => return,
        };
        let errno = match sync_data(request.fd) {
            Ok(()) => 0,
            Err(e) => e.raw_os_error().unwrap_or(EIO),
        };
        lock(finished).push((request.ticket, errno));
        // A full socket buffer already holds a wake-up: nothing is lost.
        let _ = waker.write(&[1]);
    }
}

fn sync_data(fd: RawFd) -> io::Result<()> {
    // Borrowed, never closed here: the spool owns the descriptor.
    let file = ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    file.sync_data()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panicking thread cannot leave these half-updated (push, recv).
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const EIO: i32 = 5; // for an error without an errno (none is expected)

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn wait_for(syncer: &Syncer, count: usize) -> Vec<Finished> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut all = Vec::new();
        while all.len() < count && Instant::now() < deadline {
            all.extend(syncer.finished());
            std::thread::sleep(Duration::from_millis(1));
        }
        all
    }

    #[test]
    fn every_ticket_finishes_once() {
        let dir = std::env::temp_dir().join(format!("eb-syncer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut file = File::create(dir.join("seg")).unwrap();
        file.write_all(b"records").unwrap();
        let syncer = Syncer::new(2).unwrap();
        for ticket in 1..=50 {
            syncer.sync(file.as_raw_fd(), ticket);
        }
        let mut done = wait_for(&syncer, 50);
        done.sort_unstable();
        assert_eq!(done, (1..=50).map(|t| (t, 0)).collect::<Vec<_>>());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failed_sync_reports_its_errno() {
        let syncer = Syncer::new(1).unwrap();
        syncer.sync(1 << 20, 7); // no descriptor has that number
        assert_eq!(wait_for(&syncer, 1), vec![(7, 9)]); // EBADF
    }
}
