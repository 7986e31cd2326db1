//! Files travel by mail, both ways, through a real SMTP server: a customer's PDF and inline
//! image reach staff byte for byte (the image still inline in the HTML part), an analyst's
//! `--attach` reaches the customer and the watchers, an internal note's file reaches nobody
//! outside staff, and files over `notify.attach_max_bytes` come as personal download links
//! that work as signed and fail when tampered with.

use casegate::digest::sha256_hex;
use casegate::parse::{Disposition, InboundMail};

use crate::support::notify::{open_case, to, Delivered, Setup, ANN, BOB, CAROL, JANE, TOM};
use crate::support::survey::http::http;
use crate::support::web::serve_pages;

fn base64_lines(data: &[u8]) -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode(data);
    text.as_bytes().chunks(76).map(|l| String::from_utf8_lossy(l).into_owned()).collect::<Vec<_>>().join("\r\n")
}

/// Bytes that look like nothing in particular (not text, not compressible).
fn noise(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A mail as Thunderbird writes one with a picture pasted into the text and a PDF
/// attached: mixed { related { alternative { text, html with cid: }, png }, pdf }.
fn mail_with_picture_and_pdf(png: &[u8], pdf: &[u8]) -> Vec<u8> {
    format!(
        "From: Jane Doe <{JANE}>\r\nTo: support@example.com\r\nSubject: Printer shows an error\r\n\
         Message-ID: <files-1@customer.example>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"mixed\"\r\n\r\n\
         --mixed\r\nContent-Type: multipart/related; boundary=\"related\"\r\n\r\n\
         --related\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
         --alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe printer shows this:\r\n[image]\r\nLog attached.\r\n\
         --alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n\
         <p>The printer shows this:</p><p><img src=\"cid:screen.1@customer.example\"></p><p>Log attached.</p>\r\n\
         --alt--\r\n\
         --related\r\nContent-Type: image/png; name=\"screen.png\"\r\nContent-Disposition: inline; filename=\"screen.png\"\r\n\
         Content-ID: <screen.1@customer.example>\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--related--\r\n\
         --mixed\r\nContent-Type: application/pdf; name=\"printer-log.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"printer-log.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n\
         --mixed--\r\n",
        base64_lines(png),
        base64_lines(pdf)
    )
    .into_bytes()
}

fn file<'a>(mail: &'a InboundMail, name: &str) -> Option<&'a casegate::parse::Attachment> {
    mail.attachments.iter().find(|a| a.filename == name)
}

/// Whether any part of the mail holds exactly these bytes.
fn carries(d: &Delivered, sha: &str) -> bool {
    d.mail.attachments.iter().any(|a| sha256_hex(&a.data) == sha)
}

#[test]
fn a_customer_s_pdf_and_inline_picture_reach_staff_byte_for_byte() {
    let mut s = Setup::new();
    let (png, pdf) = ([b"\x89PNG\r\n\x1a\n".as_slice(), &noise(6000, 1)].concat(), noise(20_000, 2));
    let line = s.ingest(&mail_with_picture_and_pdf(&png, &pdf));
    assert_eq!(line["outcome"], "created", "{line}");

    let sent = s.flush();
    for staff in [ANN, TOM] {
        let d = to(&sent, staff);
        assert_eq!(d.event, "new-case");
        let log = file(&d.mail, "printer-log.pdf").expect("the PDF is attached");
        assert_eq!(sha256_hex(&log.data), sha256_hex(&pdf), "the PDF arrives byte for byte");
        assert_eq!(log.content_type, "application/pdf");
        let shot = file(&d.mail, "screen.png").expect("the picture is carried");
        assert_eq!(sha256_hex(&shot.data), sha256_hex(&png), "the picture arrives byte for byte");
        assert_eq!(shot.disposition, Disposition::Inline);
        let cid = shot.content_id.as_deref().expect("an inline part has a Content-ID");
        let html = d.mail.html.as_deref().unwrap();
        assert!(html.contains(&format!("src=\"cid:{cid}\"")), "the HTML part shows the picture inline:\n{html}");
        assert!(d.mail.text.contains("printer-log.pdf") && d.mail.text.contains("screen.png"), "{}", d.mail.text);
    }
    let ack = to(&sent, JANE);
    assert_eq!(ack.event, "acknowledgement");
    assert!(ack.mail.attachments.is_empty(), "Jane is not sent her own files back");
    // The outbox holds references to the files, not copies of them.
    let stored: i64 = s.install.count("SELECT max(length(payload)) FROM outbox", []);
    assert!(stored < 6000, "the largest stored notification is {stored} bytes");
}

#[test]
fn a_staff_reply_with_attach_reaches_the_customer_and_the_watchers_with_the_file() {
    let mut s = Setup::new();
    open_case(&mut s);
    let patch = noise(30_000, 3);
    let path = s.install.path().join("fix-5.3.2.zip");
    std::fs::write(&path, &patch).unwrap();

    let out = s.install.ok(&[
        "case",
        "reply",
        "CASE-1",
        "--as",
        ANN,
        "-m",
        "The fix is attached.",
        "--attach",
        path.to_str().unwrap(),
    ]);
    assert!(out.contains("CASE-1"), "{out}");

    let sent = s.flush();
    for customer in [JANE, BOB, CAROL] {
        let d = to(&sent, customer);
        // The first answer on a New case picks it up: one mail with the answer in it.
        assert_eq!(d.event, "picked-up");
        let zip = file(&d.mail, "fix-5.3.2.zip").unwrap_or_else(|| panic!("{customer} gets the file"));
        assert_eq!(sha256_hex(&zip.data), sha256_hex(&patch));
        assert_eq!(zip.content_type, "application/zip");
        assert!(d.mail.text.contains("The fix is attached."));
    }
    let shown = s.install.case("CASE-1");
    let entry = shown["messages"].as_array().unwrap().iter().find(|m| m["kind"] == "staff").unwrap().clone();
    assert_eq!(entry["attachments"][0]["sha256"], sha256_hex(&patch), "{entry}");
}

#[test]
fn an_internal_note_s_file_reaches_nobody_outside_staff() {
    let mut s = Setup::new();
    open_case(&mut s);
    let secret = noise(4000, 4);
    let path = s.install.path().join("customer-passwords.txt");
    std::fs::write(&path, &secret).unwrap();

    // A note on a New case picks it up: the customers hear of that, with the note's
    // entry riding along the status change — without its words or its file.
    s.install.ok(&[
        "case",
        "note",
        "CASE-1",
        "--as",
        ANN,
        "-m",
        "Internal: see the file.",
        "--attach",
        path.to_str().unwrap(),
    ]);
    let sent = s.flush();
    let sha = sha256_hex(&secret);
    let tom = to(&sent, TOM);
    assert_eq!(tom.event, "note");
    assert!(carries(tom, &sha), "staff get the note's file");
    for customer in [JANE, BOB, CAROL] {
        let d = to(&sent, customer);
        assert_eq!(d.event, "picked-up");
        assert!(!carries(d, &sha), "{customer} must not get the note's file");
        assert!(!d.mail.text.contains("customer-passwords") && !d.mail.text.contains("Internal: see the file"));
    }
    for d in &sent {
        assert!(!carries(d, &sha) || d.to == TOM || d.to == ANN, "{} got the note's file", d.to);
    }
}

#[tokio::test]
async fn files_over_the_limit_come_as_personal_links_that_work_signed_and_not_tampered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut s = Setup::with_tables(
        "attach_max_bytes = 8000\n",
        &format!("[web]\nbase_url = \"http://{addr}\"\nsecret = \"attachments-test secret 0123456789\"\n"),
    );
    let config = std::sync::Arc::new(casegate::config::Config::load(&s.install.config).unwrap());
    let (shutdown, server) = serve_pages(config, listener);
    let (png, pdf) = (noise(3000, 5), noise(50_000, 6));
    s.ingest(&mail_with_picture_and_pdf(&png, &pdf));

    let sent = tokio::task::spawn_blocking(move || {
        let sent = s.flush();
        (s, sent)
    })
    .await
    .unwrap();
    let (_s, sent) = sent;
    let d = to(&sent, ANN);
    assert!(file(&d.mail, "screen.png").is_some(), "what fits is carried");
    assert!(file(&d.mail, "printer-log.pdf").is_none(), "what does not fit is not");
    let link = d
        .mail
        .text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("http://{addr}/file/")))
        .unwrap_or_else(|| panic!("no download link in:\n{}", d.mail.text))
        .to_string();
    assert!(d.mail.text.contains("printer-log.pdf") && d.mail.text.contains("too large to send by mail"));
    let path = link.strip_prefix(&format!("http://{addr}")).unwrap();

    let got = http(addr, "GET", path, &[], b"").await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(sha256_hex(&got.bytes), sha256_hex(&pdf), "the download is the file, byte for byte");
    assert!(got.header("content-disposition").unwrap().starts_with("attachment; filename=\"printer-log.pdf\""));
    assert_eq!(got.header("content-type"), Some("application/pdf"));

    // Any changed character makes the link useless.
    let last = path.chars().last().unwrap();
    let tampered = format!("{}{}", &path[..path.len() - 1], if last == 'A' { 'B' } else { 'A' });
    let refused = http(addr, "GET", &tampered, &[], b"").await;
    assert_eq!(refused.status, 404);
    assert!(!refused.bytes.windows(64).any(|w| pdf.windows(64).next() == Some(w)), "nothing of the file is sent");
    // Jane's own link to the same file would be another token; Ann's does not open it for her.
    let to_jane = to(&sent, JANE);
    assert!(!to_jane.mail.text.contains(path), "links are personal");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}
