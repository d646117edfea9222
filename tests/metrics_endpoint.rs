//! The metrics endpoint under abuse: idle and trickling connections do not hold a scrape, and
//! the probes answer as Kubernetes expects.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tidemark::metrics::{Sampler, Server, Shared};

/// One GET, read to the end: status line and body.
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    // Below the endpoint's 5 s head deadline: an answer that waited for the abusive
    // connections to be cut would not arrive in time.
    s.set_read_timeout(Some(Duration::from_secs(4))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// Whether the server still holds `s` open (a read would block rather than see the end).
fn still_open(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock)
}

/// An endpoint on a free port serving one gauge, `tidemark_test 1`.
fn serving_a_gauge() -> Server {
    let shared = Shared::default();
    shared
        .lock()
        .registry
        .set("tidemark_test", "A test gauge.", vec![], 1.0);
    Server::start("127.0.0.1:0", shared).unwrap()
}

#[test]
fn a_scrape_is_answered_while_idle_and_trickling_connections_are_held() {
    let server = serving_a_gauge();
    let addr = server.addr();
    let mut idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Twenty clients sending their request head one byte a second, until told to stop; each
    // says how many bytes the server took.
    let trickle: Vec<_> = (0..20)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut sent = 0;
                for b in b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n".iter() {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    sent += 1;
                    for _ in 0..10 {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            return sent;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(2300));
    let began = Instant::now();
    let (status, body) = get(addr, "/metrics");
    let took = began.elapsed();
    eprintln!("scrape answered in {took:?} beside 200 idle and 20 trickling connections");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("tidemark_test 1"), "{body}");
    // It was answered beside them, not after they were cut.
    let open = idle.iter_mut().map(still_open).filter(|o| *o).count();
    assert_eq!(
        open, 200,
        "idle connections were closed before the scrape was answered"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in trickle {
        // Each was still sending, one byte a second, when the scrape was answered.
        assert!(t.join().unwrap() >= 3);
    }
}

/// Raises this process's open-file limit to at least `n` (within the hard limit): the test
/// below holds both ends of several hundred connections.
fn raise_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit write and read the struct passed, nothing else.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            lim.rlim_cur = n.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
}

#[test]
fn connections_beyond_the_bound_are_closed_at_once_and_scrapes_resume() {
    use tidemark::metrics::server::MAX_CONNECTIONS;
    raise_open_files(2 * MAX_CONNECTIONS as u64 + 256);
    let server = serving_a_gauge();
    let addr = server.addr();
    // Idle connections until one is closed on arrival: the bound is reached.
    let mut held: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let began = Instant::now();
    let mut closed_at_once = false;
    while began.elapsed() < Duration::from_secs(3) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            // Closed by the server without an answer.
            Ok(0) => {
                closed_at_once = true;
                break;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                closed_at_once = true;
                break;
            }
            // Still waiting for its head: the server took it; it holds a slot too.
            _ => held.push(s),
        }
    }
    assert!(
        closed_at_once,
        "no connection was refused beyond {MAX_CONNECTIONS} ({} held)",
        held.len()
    );
    assert!(held.len() <= MAX_CONNECTIONS + 16, "{} held", held.len());
    // Once the idle ones go, scrapes are answered again.
    drop(held);
    let began = Instant::now();
    loop {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if text.starts_with("HTTP/1.1 200 OK") {
            assert!(text.contains("tidemark_test 1"), "{text}");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "scrapes were not answered after the idle connections closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_client_that_never_sends_its_head_is_cut_off() {
    let server = Server::start("127.0.0.1:0", Shared::default()).unwrap();
    let mut s = TcpStream::connect(server.addr()).unwrap();
    s.write_all(b"GET /met").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    // The server closes the connection (with or without a 408) once the head deadline passes.
    let r = s.read_to_end(&mut rest);
    assert!(r.is_ok(), "{r:?}");
    let text = String::from_utf8_lossy(&rest);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[test]
fn probes_say_alive_and_ready_only_while_the_dataflow_runs() {
    let shared = Shared::default();
    let server = Server::start("127.0.0.1:0", shared.clone()).unwrap();
    let addr = server.addr();
    assert_eq!(get(addr, "/healthz").0, "HTTP/1.1 200 OK");
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.contains("has not started"), "{body}");
    let mut sampler = Sampler::new(shared.clone());
    assert_eq!(get(addr, "/readyz").0, "HTTP/1.1 200 OK");
    sampler.finished();
    let (status, body) = get(addr, "/readyz");
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.contains("finished"), "{body}");
    assert_eq!(get(addr, "/nope").0, "HTTP/1.1 404 Not Found");
}
