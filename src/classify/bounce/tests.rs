//! The bounce reader on mails written the ways mail systems write them. (The shared corpus
//! of real bounces is scored by `tests/it/bounce_corpus.rs`.)

use super::*;
use crate::parse::parse as parse_mail;

fn read(raw: &str) -> Report {
    let raw = raw.replace('\n', "\r\n");
    let mail = parse_mail(raw.as_bytes()).expect("test mail parses");
    parse(&mail, raw.as_bytes()).expect("a report")
}

fn addresses(report: &Report) -> Vec<&str> {
    report.recipients.iter().map(|r| r.address.as_str()).collect()
}

const DSN: &str = "From: MAILER-DAEMON@mx.example (Mail Delivery System)
To: support@example.com
Subject: Undelivered Mail Returned to Sender
Content-Type: multipart/report; report-type=delivery-status; boundary=B

--B
Content-Type: text/plain

I'm sorry to have to inform you that your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example

Final-Recipient: rfc822; gone@customer.example
Original-Recipient: rfc822;Gone@Customer.example
Action: failed
Status: 5.0.0
Diagnostic-Code: smtp; 550 5.1.1 <gone@customer.example>: Recipient address
    rejected: User unknown in local recipient table

Final-Recipient: rfc822; full@customer.example
Action: delayed
Status: 4.2.2
Diagnostic-Code: smtp; 452 4.2.2 Mailbox full
--B
Content-Type: message/rfc822

Message-ID: <n1.abc@example.com>
From: support@example.com
To: gone@customer.example, full@customer.example
Subject: [CASE-1] Printer

Hello
--B--
";

#[test]
fn a_delivery_status_report_is_read_per_recipient() {
    let r = read(DSN);
    assert_eq!(addresses(&r), ["gone@customer.example", "full@customer.example"]);
    let gone = &r.recipients[0];
    assert_eq!(gone.original.as_ref().map(Address::as_str), Some("gone@customer.example"));
    assert_eq!((gone.action, gone.status.as_deref(), gone.reply_code), (Action::Failed, Some("5.1.1"), Some(550)));
    assert_eq!((gone.cause, gone.hard), (Cause::UserUnknown, true));
    assert_eq!(
        gone.diagnostic,
        "550 5.1.1 <gone@customer.example>: Recipient address rejected: User unknown in local recipient table"
    );
    assert!(gone.summary().starts_with("5.1.1 user-unknown: 550 5.1.1"), "{}", gone.summary());
    let full = &r.recipients[1];
    assert_eq!(
        (full.action, full.status.as_deref(), full.cause, full.hard),
        (Action::Delayed, Some("4.2.2"), Cause::MailboxFull, false)
    );
    assert_eq!(r.failed().count(), 1, "a delay is no failure");
    assert_eq!(r.returned_ids, ["n1.abc@example.com"]);
}

#[test]
fn recipient_blocks_without_blank_lines_between_them_are_split() {
    let raw = DSN.replace("User unknown in local recipient table\n\n", "User unknown in local recipient table\n");
    assert_eq!(addresses(&read(&raw)).len(), 2);
}

#[test]
fn a_qmail_notice_is_read_from_its_text_and_the_returned_message_is_not() {
    let r = read(
        "From: MAILER-DAEMON@mx.example
To: support@example.com
Subject: failure notice

Hi. This is the qmail-send program at mx.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<gone@customer.example>:
192.0.2.1 does not like recipient.
Remote host said: 550 5.1.1 <gone@customer.example>... User Unknown
Giving up on 192.0.2.1.

--- Below this line is a copy of the message.

Return-Path: <support@example.com>
Message-ID: <n2.abc@example.com>
From: support@example.com
To: gone@customer.example, other@customer.example

Hello
",
    );
    assert_eq!(addresses(&r), ["gone@customer.example"], "other@ only appears in the returned message");
    let gone = &r.recipients[0];
    assert_eq!(
        (gone.status.as_deref(), gone.reply_code, gone.cause, gone.hard),
        (Some("5.1.1"), Some(550), Cause::UserUnknown, true)
    );
    assert_eq!(r.returned_ids, ["n2.abc@example.com"]);
}

#[test]
fn x_failed_recipients_names_the_recipients_and_the_text_the_reason() {
    let r = read(
        "From: Mail Delivery System <Mailer-Daemon@mx.example>
To: support@example.com
X-Failed-Recipients: gone@customer.example
Subject: Mail delivery failed: returning message to sender

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  gone@customer.example
    host mx.customer.example [192.0.2.9]
    SMTP error from remote mail server after RCPT TO:<gone@customer.example>:
    550 No such user here
",
    );
    assert_eq!(addresses(&r), ["gone@customer.example"]);
    let gone = &r.recipients[0];
    assert_eq!((gone.reply_code, gone.cause, gone.hard), (Some(550), Cause::UserUnknown, true));
}

#[test]
fn user_unknown_is_believed_only_when_said_to_the_recipient() {
    let notice = |stage: &str| {
        format!(
            "From: MAILER-DAEMON@mx.example\nTo: support@example.com\nSubject: Returned mail\n\n\
             The following address failed:\n\n<gone@carrier.example>: host mx.carrier.example said:\n    \
             550 Unknown user gone@carrier.example {stage}\n"
        )
    };
    let at_rcpt = read(&notice("(in reply to RCPT TO command)"));
    assert_eq!((at_rcpt.recipients[0].cause, at_rcpt.recipients[0].hard), (Cause::UserUnknown, true));
    // A carrier's filter answers the content with the same words; the address may exist.
    let after_data = read(&notice("(in reply to end of DATA command)"));
    assert_eq!((after_data.recipients[0].cause, after_data.recipients[0].hard), (Cause::Filtered, false));
}

#[test]
fn the_servers_own_code_is_more_precise_than_the_reports_summary() {
    let raw = DSN.replace("550 5.1.1 <gone", "552 5.2.2 <gone");
    let r = read(&raw);
    assert_eq!(r.recipients[0].status.as_deref(), Some("5.2.2"));
    // An IP address or a version number is no status code.
    assert_eq!(first_status("host 192.0.2.153 said 550"), None);
    assert_eq!(first_status("Exim 4.92.3 (#5.5.0)").as_deref(), Some("5.5.0"));
}

#[test]
fn contacts_and_the_bounces_own_addresses_are_no_recipients() {
    let r = read(
        "From: MAILER-DAEMON@isp.example
To: support@example.com
Subject: Undelivered Mail Returned to Sender

Your message from support@example.com could not be delivered.
For further assistance, please contact <help@isp.example>

<gone@customer.example>: host mx.customer.example said: 550 5.1.1 user unknown
Again, write to help@isp.example or postmaster@isp.example.
",
    );
    assert_eq!(addresses(&r), ["gone@customer.example"]);
}

#[test]
fn a_report_that_names_no_recipient_is_nothing() {
    let raw = "From: MAILER-DAEMON@mx.example\r\nTo: support@example.com\r\nSubject: failure\r\n\r\nIt failed.\r\n";
    let mail = parse_mail(raw.as_bytes()).unwrap();
    assert_eq!(parse(&mail, raw.as_bytes()), None);
}

#[test]
fn hostile_reports_are_read_within_bounds() {
    let mut raw = String::from("From: MAILER-DAEMON@mx.example\nTo: support@example.com\nSubject: failure\n\n");
    for i in 0..5_000 {
        raw.push_str(&format!("<user{i}@customer.example>: 550 {}\n", "é".repeat(50)));
    }
    let r = read(&raw);
    assert!(r.recipients.len() <= MAX_RECIPIENTS);
    assert!(r.recipients.iter().all(|x| x.diagnostic.chars().count() <= MAX_DIAGNOSTIC + 1));
    // Status fields repeated without end, and a diagnostic folded over thousands of lines.
    let mut dsn = DSN.replace("Action: failed\n", &"Action: failed\n".repeat(10_000));
    dsn = dsn.replace("rejected: User unknown", &format!("rejected:{}", "\n    more".repeat(10_000)));
    // What lies beyond the bound (the second recipient) is left out; the first is read.
    let r = read(&dsn);
    assert_eq!(addresses(&r), ["gone@customer.example"]);
}

#[test]
fn the_return_path_names_its_row_and_nothing_else_does() {
    let base = Address::parse("bounce@example.com").unwrap();
    assert_eq!(return_path(&base, 17), "bounce+17@example.com");
    let to = |headers: &str| {
        let raw = format!("From: MAILER-DAEMON@mx.example\r\n{headers}\r\nSubject: failure\r\n\r\nx\r\n");
        return_path_row(&parse_mail(raw.as_bytes()).unwrap(), &base)
    };
    assert_eq!(to("To: <bounce+17@example.com>"), Some(17));
    assert_eq!(to("To: support@example.com\r\nDelivered-To: Bounce+42@Example.com"), Some(42));
    assert_eq!(to("To: bounce+17@other.example"), None, "another domain");
    assert_eq!(to("To: bounce+x17@example.com"), None, "not a row number");
    assert_eq!(to("To: bounce+0@example.com"), None);
    assert_eq!(to("To: bounce@example.com"), None);
    assert_eq!(to("To: bounce+99999999999999999999@example.com"), None, "too large to be a row");
}
