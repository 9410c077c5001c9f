//! The server end to end, over real sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use super::*;

/// A response: status, lower-case headers, body.
type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// Reads one response from a keep-alive connection (body by
/// Content-Length; none for HEAD).
fn read_response(r: &mut BufReader<TcpStream>, head: bool) -> Response {
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .expect("Content-Length always");
    let mut body = vec![0; if head { 0 } else { len }];
    r.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.1
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn serves_files_ranges_and_refusals_over_keep_alive() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    std::fs::create_dir_all(root.join("demo/1.0")).unwrap();
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(root.join("demo/1.0/usr.payload"), &data).unwrap();
    std::fs::write(root.join("demo/stable.json"), b"{}").unwrap();
    std::fs::write(tmp.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink("../secret", root.join("escape")).unwrap();
    let log = tmp.path().join("requests.log");
    let server = Server::bind(&root, "127.0.0.1:0", Some(&log)).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run());

    let stream = TcpStream::connect(addr).unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut ask = |req: &str, head: bool| {
        w.write_all(req.as_bytes()).unwrap();
        read_response(&mut r, head)
    };
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n");
    let file = "/demo/1.0/usr.payload";

    let full = ask(&get(file, ""), false);
    assert_eq!((full.0, full.2.len()), (200, data.len()));
    assert_eq!(full.2, data);
    assert_eq!(header(&full, "accept-ranges"), Some("bytes"));
    let part = ask(&get(file, "Range: bytes=10-19\r\n"), false);
    assert_eq!(part.0, 206);
    assert_eq!(part.2, &data[10..20]);
    assert_eq!(header(&part, "content-range"), Some("bytes 10-19/100000"));
    let tail = ask(&get(file, "Range: bytes=99990-\r\n"), false);
    assert_eq!((tail.0, &tail.2[..]), (206, &data[99_990..]));
    let suffix = ask(&get(file, "Range: bytes=-5\r\n"), false);
    assert_eq!((suffix.0, &suffix.2[..]), (206, &data[99_995..]));
    let bad = ask(&get(file, "Range: bytes=100000-\r\n"), false);
    assert_eq!(bad.0, 416);
    assert_eq!(header(&bad, "content-range"), Some("bytes */100000"));
    let etag = header(&full, "etag").unwrap().to_string();
    let if_range = ask(
        &get(file, &format!("Range: bytes=0-0\r\nIf-Range: {etag}\r\n")),
        false,
    );
    assert_eq!(if_range.0, 206);
    let stale = ask(
        &get(file, "Range: bytes=0-0\r\nIf-Range: \"old\"\r\n"),
        false,
    );
    assert_eq!((stale.0, stale.2.len()), (200, data.len()));
    let head = ask(&format!("HEAD {file} HTTP/1.1\r\n\r\n"), true);
    assert_eq!(head.0, 200);
    assert_eq!(header(&head, "content-length"), Some("100000"));
    let head404 = ask("HEAD /nothing HTTP/1.1\r\n\r\n", true);
    assert_eq!(head404.0, 404);
    assert_ne!(header(&head404, "content-length"), Some("0"));
    let json = ask(&get("/demo/stable.json", ""), false);
    assert_eq!(header(&json, "content-type"), Some("application/json"));
    assert_eq!(ask(&get("/demo/missing", ""), false).0, 404);
    assert_eq!(ask(&get("/demo", ""), false).0, 404);
    assert_eq!(ask(&get("/../secret", ""), false).0, 400);
    assert_eq!(ask(&get("/demo/%2e%2e/%2e%2e/secret", ""), false).0, 400);
    assert_eq!(ask(&get("/escape", ""), false).0, 403);
    std::fs::write(root.join(".tandem-release.lock"), b"").unwrap();
    assert_eq!(ask(&get("/.tandem-release.lock", ""), false).0, 404);
    let post = ask("POST /x HTTP/1.1\r\n\r\n", false);
    assert_eq!((post.0, header(&post, "allow")), (405, Some("GET, HEAD")));
    // Still the same connection after all of that.
    assert_eq!(ask(&get(file, "Range: bytes=0-0\r\n"), false).2, [0]);
    // Connection: close is honoured.
    let last = ask(
        &get(file, "Connection: close\r\nRange: bytes=1-1\r\n"),
        false,
    );
    assert_eq!(header(&last, "connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(r.read_to_end(&mut rest).unwrap(), 0);

    // A malformed request gets 400 and the connection closes.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GARBAGE\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");

    // The log: one JSON object per request, in order, bytes as sent.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20, "{lines:?}");
    assert_eq!(lines[0]["path"], file);
    assert_eq!(lines[0]["range"], serde_json::Value::Null);
    assert_eq!(lines[0]["bytes"], 100_000);
    assert_eq!(lines[1]["range"], "bytes=10-19");
    assert_eq!(lines[1]["status"], 206);
    assert_eq!(lines[1]["bytes"], 10);
    let payload_bytes: u64 = lines
        .iter()
        .filter(|l| l["path"] == file && l["status"] == 206)
        .map(|l| l["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(payload_bytes, 10 + 10 + 5 + 1 + 1 + 1);
}

#[test]
fn http10_closes_unless_asked() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("f"), b"hello").unwrap();
    let server = Server::bind(tmp.path(), "127.0.0.1:0", None).unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run());
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /f HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Connection: close\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");
}

/// The dashboard with its etcd unreachable: every page still answers and
/// says so; anything but GET and HEAD is refused (read-only).
#[test]
fn the_dashboard_answers_and_says_what_it_cannot_read() {
    use fleet_view::source::{Repo, Source};

    // A port nothing listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let etcd_url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let tmp = tempfile::tempdir().unwrap();
    let source = Source {
        etcd: agent::etcd::Etcd::new(&[etcd_url], agent::etcd::Auth::None, &Default::default())
            .unwrap(),
        repo: Some(Repo::parse(&tmp.path().display().to_string())),
        trusted: Vec::new(),
    };
    let server = Dashboard::new(
        source,
        DashboardOptions {
            refresh: std::time::Duration::ZERO,
        },
    )
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.local_addr().unwrap();
    std::thread::spawn(move || server.run());

    let stream = TcpStream::connect(addr).unwrap();
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut get = |method: &str, path: &str| {
        write!(w, "{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        read_response(&mut r, method == "HEAD")
    };
    let page = get("GET", "/");
    assert_eq!(page.0, 200);
    assert_eq!(
        header(&page, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let text = String::from_utf8(page.2).unwrap();
    assert!(
        text.contains("Not everything could be read") && text.contains("etcd: "),
        "{text}"
    );
    let metrics = get("GET", "/metrics");
    let text = String::from_utf8(metrics.2).unwrap();
    assert!(
        text.contains("tandem_dashboard_source_up{source=\"etcd\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("tandem_dashboard_source_up{source=\"repository\"} 1"),
        "{text}"
    );
    let json = get("GET", "/api/fleet");
    let v: serde_json::Value = serde_json::from_slice(&json.2).unwrap();
    assert_eq!(v["etcd_up"], false);
    assert_eq!(get("HEAD", "/fragment").0, 200);
    assert_eq!(get("GET", "/nope").0, 404);
    let post = get("DELETE", "/api/fleet");
    assert_eq!(post.0, 405);
    assert!(String::from_utf8_lossy(&post.2).contains("read-only"));
}
