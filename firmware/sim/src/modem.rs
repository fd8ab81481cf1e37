//! An emulated cellular modem behind an in-process UART: it answers the
//! driver's AT commands as a real modem does (echo until `ATE0`, `OK`,
//! `+CNMI:`/`+CMGF:` read-backs) and injects every line read from stdin as
//! an unsolicited result code. The UART side implements
//! `embedded_io_async::{Read, Write}` for the application.

use std::collections::VecDeque;
use std::io::BufRead;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::signal::Signal;

/// Bytes from the modem to the application, and a signal when some arrive.
struct Rx {
    bytes: Mutex<VecDeque<u8>>,
    ready: Signal<CriticalSectionRawMutex, ()>,
}

impl Rx {
    fn push(&self, data: &[u8]) {
        self.bytes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(data);
        self.ready.signal(());
    }
}

/// The application's side of the UART.
pub(crate) struct Uart {
    rx: Arc<Rx>,
    tx: mpsc::Sender<Vec<u8>>,
}

impl embedded_io_async::ErrorType for Uart {
    type Error = core::convert::Infallible;
}

impl embedded_io_async::Read for Uart {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        loop {
            {
                let mut bytes = self.rx.bytes.lock().unwrap_or_else(|p| p.into_inner());
                if !bytes.is_empty() {
                    let n = buf.len().min(bytes.len());
                    for (dst, src) in buf.iter_mut().zip(bytes.drain(..n)) {
                        *dst = src;
                    }
                    return Ok(n);
                }
            }
            self.rx.ready.wait().await;
        }
    }
}

impl embedded_io_async::Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // The modem thread outlives the application; a send cannot fail
        // while it runs.
        let _ = self.tx.send(buf.to_vec());
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The modem's answer to one command line.
fn answer(line: &str, echo: &mut bool, cnmi: &mut String, cmgf: &mut String) -> Vec<u8> {
    let mut out = Vec::new();
    if *echo {
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let reply = match line {
        "AT" => "OK".to_owned(),
        "ATE0" => {
            *echo = false;
            "OK".to_owned()
        }
        "AT+CNMI?" => format!("+CNMI: {cnmi}\r\n\r\nOK"),
        "AT+CMGF?" => format!("+CMGF: {cmgf}\r\n\r\nOK"),
        l if l.starts_with("AT+CNMI=") => {
            *cnmi = l["AT+CNMI=".len()..].to_owned();
            "OK".to_owned()
        }
        l if l.starts_with("AT+CMGF=") => {
            *cmgf = l["AT+CMGF=".len()..].to_owned();
            "OK".to_owned()
        }
        _ => "ERROR".to_owned(),
    };
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(reply.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// Starts the modem (one thread answering commands, one reading stdin) and
/// returns the application's UART.
pub(crate) fn spawn() -> Uart {
    let rx = Arc::new(Rx {
        bytes: Mutex::new(VecDeque::new()),
        ready: Signal::new(),
    });
    let (tx, commands) = mpsc::channel::<Vec<u8>>();
    let to_app = rx.clone();
    std::thread::spawn(move || {
        let (mut echo, mut cnmi, mut cmgf) = (true, "0,0,0,0,0".to_owned(), "0".to_owned());
        let mut pending = Vec::new();
        for chunk in commands {
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|b| *b == b'\r') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line[..line.len() - 1])
                    .trim()
                    .to_owned();
                if !line.is_empty() {
                    to_app.push(&answer(&line, &mut echo, &mut cnmi, &mut cmgf));
                }
            }
        }
    });
    let injected = rx.clone();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            injected.push(format!("\r\n{line}\r\n").as_bytes());
        }
    });
    Uart { rx, tx }
}
