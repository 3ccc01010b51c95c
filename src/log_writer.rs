//! Where `serve`'s log lines go: into memory first, then to stderr in
//! batches, written by a thread of its own. A review's log line then costs
//! no system call on the request's path (a write to a file or pipe per line
//! cost 7 to 17 us of CPU per admission, more than the rules), and a slow
//! reader of stderr (a full container log pipe) never stalls an admission.
//!
//! Lines reach stderr within [`BATCH_WINDOW`] of being logged, in order.
//! Past [`MAX_BUFFERED`] bytes waiting (stderr blocked), new lines are
//! dropped and counted, and the count is logged once stderr takes lines
//! again. [`Flush`], dropped at the end of `main`, writes what is left.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the writer thread lets lines gather before one write.
pub const BATCH_WINDOW: Duration = Duration::from_millis(20);
/// Bytes that may wait for stderr before lines are dropped.
pub const MAX_BUFFERED: usize = 4 << 20;

/// The [`MakeWriter`] of the log: each line goes into the shared buffer.
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Writes what is still buffered, and stops the writer thread, on drop.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled when the buffer stops being empty, and on close.
    filled: Condvar,
}

#[derive(Default)]
struct State {
    buffer: Vec<u8>,
    dropped: u64,
    closed: bool,
}

impl BatchedWriter {
    /// A writer into `sink` (stderr in `serve`) and the thread writing to it.
    pub fn start(sink: impl Write + Send + 'static) -> std::io::Result<(BatchedWriter, Flush)> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            filled: Condvar::new(),
        });
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn({
                let shared = shared.clone();
                move || write_batches(&shared, sink)
            })?;
        Ok((
            BatchedWriter {
                shared: shared.clone(),
            },
            Flush {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while appending left whole lines or none.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn write_batches(shared: &Shared, mut sink: impl Write) {
    let mut batch = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.buffer.is_empty() && !state.closed {
            state = shared.filled.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if !state.closed {
            drop(state);
            std::thread::sleep(BATCH_WINDOW);
            state = shared.lock();
        }
        // The spare buffer keeps its capacity: no allocation per batch.
        std::mem::swap(&mut batch, &mut state.buffer);
        let (dropped, closed) = (std::mem::take(&mut state.dropped), state.closed);
        drop(state);
        // Nothing to do about a failed write to stderr but go on.
        let _ = sink.write_all(&batch).and_then(|()| sink.flush());
        batch.clear();
        if dropped > 0 {
            tracing::warn!(dropped, "log lines dropped: stderr did not keep up");
        }
        if closed && shared.lock().buffer.is_empty() {
            return;
        }
    }
}

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.filled.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line of the log (tracing writes each formatted line at once).
pub struct Line<'a>(&'a Shared);

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock();
        if state.buffer.len() + bytes.len() > MAX_BUFFERED {
            state.dropped += 1;
            return Ok(bytes.len());
        }
        let was_empty = state.buffer.is_empty();
        state.buffer.extend_from_slice(bytes);
        drop(state);
        if was_empty {
            self.0.filled.notify_one();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line(&self.shared)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A sink that takes nothing until `open` is set.
    struct Blocked(Arc<(Mutex<bool>, Condvar)>, Sink);

    impl Write for Blocked {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let (open, changed) = &*self.0;
            let mut open = open.lock().unwrap();
            while !*open {
                open = changed.wait(open).unwrap();
            }
            self.1.write(bytes)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn text(sink: &Sink) -> String {
        String::from_utf8(sink.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn lines_arrive_in_order_and_the_rest_is_written_on_flush() {
        let sink = Sink::default();
        let (writer, flush) = BatchedWriter::start(sink.clone()).unwrap();
        let mut expected = String::new();
        for i in 0..1000 {
            let line = format!("line {i}\n");
            writer.make_writer().write_all(line.as_bytes()).unwrap();
            expected.push_str(&line);
        }
        drop(flush);
        assert_eq!(text(&sink), expected);
    }

    #[test]
    fn a_line_is_written_within_the_batch_window_without_a_flush() {
        let sink = Sink::default();
        let (writer, _flush) = BatchedWriter::start(sink.clone()).unwrap();
        writer.make_writer().write_all(b"reviewed\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while text(&sink).is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(text(&sink), "reviewed\n");
    }

    #[test]
    fn lines_beyond_the_buffer_are_dropped_while_stderr_is_blocked() {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let (writer, flush) = BatchedWriter::start(Blocked(gate.clone(), sink.clone())).unwrap();
        let line = vec![b'x'; 1023];
        let lines = 2 * MAX_BUFFERED / 1024;
        for _ in 0..lines {
            let mut line = line.clone();
            line.push(b'\n');
            // Never blocks, however long stderr does.
            writer.make_writer().write_all(&line).unwrap();
        }
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        drop(flush);
        let written = text(&sink).lines().count();
        assert!(written < lines, "{written} of {lines} written");
        assert!(written >= MAX_BUFFERED / 1024 - 1, "{written} written");
    }
}
