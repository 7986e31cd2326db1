//! The survey page over real HTTP on a bound port: what a GET shows, what a POST records,
//! and everything that must be refused without recording anything.

use chrono::{Duration, Utc};

use crate::support::mailstack::free_port;
use crate::support::survey::http::{accepts_within, form_encode, http, request_raw};
use crate::support::survey::site::{form_tag, SurveySite, SECRET};

const JANE: &str = "jane@customer.example";

async fn site_with_link(subject: &str) -> (SurveySite, i64, String) {
    let site = SurveySite::start().await;
    let case = site.open_case(&format!("Jane <{JANE}>"), subject);
    let url = site.invite(case, JANE);
    let path = site.path_of(&url);
    (site, case, path)
}

fn audit_count(site: &SurveySite, action_like: &str) -> i64 {
    site.install.count("SELECT count(*) FROM audit WHERE action LIKE ?1", [action_like])
}

#[tokio::test]
async fn a_get_shows_the_form_and_records_nothing() {
    let (site, _case, path) = site_with_link("VPN drops every hour").await;

    for _ in 0..3 {
        let page = site.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.header("content-type").unwrap().starts_with("text/html; charset=utf-8"));
        assert!(page.body.contains("How did we do?"));
        assert!(page.body.contains("<strong>CASE-1</strong>") && page.body.contains("VPN drops every hour"));
        assert!(page.body.contains("<form method=\"post\">"));
        assert!(page.body.contains("name=\"score\"") && page.body.contains("name=\"solved\""));
    }
    let head = http(site.addr, "HEAD", &path, &[], b"").await;
    assert_eq!(head.status, 200);

    assert!(site.answers().is_empty(), "a GET (a mail scanner following the link) records nothing");
    assert_eq!(audit_count(&site, "survey-answer%"), 0);
    site.stop().await;
}

#[tokio::test]
async fn a_post_records_the_answer_and_thanks() {
    let (site, case, path) = site_with_link("Printer offline").await;

    let reply = site.answer(&path, "4", "yes", "Quick and friendly").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("Thank you!") && reply.body.contains("We have received your answer."));
    assert!(reply.body.contains("4 of 5") && reply.body.contains("Quick and friendly"));
    assert_eq!(
        site.answers(),
        [(case, JANE.to_string(), 4, Some(1), Some("Quick and friendly".to_string()), "web".to_string())]
    );
    assert_eq!(audit_count(&site, "survey-answered"), 1);
    site.stop().await;
}

#[tokio::test]
async fn a_second_post_changes_the_answer_and_the_form_shows_it() {
    let (site, case, path) = site_with_link("Printer offline").await;
    site.answer(&path, "2", "no", "").await;

    let reply = site.answer(&path, "5", "yes", "Works now").await;

    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("We have updated your answer."));
    assert_eq!(site.answers(), [(case, JANE.to_string(), 5, Some(1), Some("Works now".into()), "web".into())]);
    let page = site.get(&path).await;
    assert!(page.body.contains("value=\"5\" required checked>"), "{}", page.body);
    assert!(page.body.contains("value=\"yes\" required checked>"));
    assert!(page.body.contains(">Works now</textarea>"));
    assert!(page.body.contains("You answered on"));
    site.stop().await;
}

#[tokio::test]
async fn an_incomplete_answer_is_asked_again_and_not_recorded() {
    let (site, _case, path) = site_with_link("Printer offline").await;
    let tag = form_tag(&site.get(&path).await.body);

    let no_score = site.post(&path, &[("form", &tag), ("solved", "yes"), ("comment", "keep me")]).await;
    let bad_score = site.post(&path, &[("form", &tag), ("score", "6"), ("solved", "yes")]).await;
    let no_solved = site.post(&path, &[("form", &tag), ("score", "3")]).await;

    assert_eq!(no_score.status, 422);
    assert!(no_score.body.contains("role=\"alert\"") && no_score.body.contains("from 1 to 5"));
    assert!(no_score.body.contains(">keep me</textarea>"), "what was typed is kept");
    assert_eq!(bad_score.status, 422);
    assert_eq!(no_solved.status, 422);
    assert!(no_solved.body.contains("solved your problem"));
    assert!(site.answers().is_empty());
    site.stop().await;
}

#[tokio::test]
async fn tampered_expired_and_unknown_links_are_refused_and_record_nothing() {
    let site = SurveySite::start().await;
    let case = site.open_case(JANE, "Printer offline");
    let good = site.path_of(&site.invite(case, JANE));

    // One character changed in the middle of the token.
    let mut chars: Vec<char> = good.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    // Invited 31 days ago with links valid for 30.
    let other = site.open_case(JANE, "Old case");
    let expired = site.path_of(&site.invite_at(other, JANE, Utc::now() - Duration::days(31)));
    // Signed with the right secret, but nobody was invited: the case has no such person.
    let stranger = casegate::address::Address::parse("mallory@evil.example").unwrap();
    let uninvited = format!(
        "/survey/{}",
        casegate::survey::token::sign(SECRET.as_bytes(), case, &stranger, Utc::now() + Duration::days(5))
    );
    // A genuine recipient, but an expiry the invitation does not have.
    let jane = casegate::address::Address::parse(JANE).unwrap();
    let reissued = format!(
        "/survey/{}",
        casegate::survey::token::sign(SECRET.as_bytes(), case, &jane, Utc::now() + Duration::days(300))
    );
    let forged_elsewhere = format!(
        "/survey/{}",
        casegate::survey::token::sign(b"some other installation's secret", case, &jane, Utc::now() + Duration::days(5))
    );

    for (path, status, words) in [
        (tampered.as_str(), 404, "This survey link is not valid"),
        (expired.as_str(), 410, "This survey has closed"),
        (uninvited.as_str(), 404, "This survey link is not valid"),
        (reissued.as_str(), 404, "This survey link is not valid"),
        (forged_elsewhere.as_str(), 404, "This survey link is not valid"),
        ("/survey/", 404, "Page not found"),
        ("/survey/%3Cscript%3E", 404, "This survey link is not valid"),
        (&format!("{good}%3D"), 404, "This survey link is not valid"),
    ] {
        let page = site.get(path).await;
        assert_eq!(page.status, status, "GET {path}: {}", page.body);
        assert!(page.body.contains(words), "GET {path}: {}", page.body);
        // A form tag that matches the path, so that the link is what gets refused.
        let token = path.trim_start_matches("/survey/");
        let tag = casegate::survey::token::form_tag(SECRET.as_bytes(), token);
        let post = site.post(path, &[("form", tag.as_str()), ("score", "1"), ("solved", "no")]).await;
        assert_eq!(post.status, status, "POST {path}: {}", post.body);
    }
    assert!(site.answers().is_empty());
    site.stop().await;
}

#[tokio::test]
async fn a_post_from_another_site_is_refused() {
    let (site, _case, path) = site_with_link("Printer offline").await;
    let tag = form_tag(&site.get(&path).await.body);
    let fields = [("form", tag.as_str()), ("score", "1"), ("solved", "no")];

    for headers in [
        vec![("Origin", "https://evil.example")],
        vec![("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
        vec![("Origin", "null")],
        vec![("Sec-Fetch-Site", "same-site")],
        vec![("Referer", "https://evil.example/page")],
    ] {
        let reply = site.post_with(&path, &fields, &headers).await;
        assert_eq!(reply.status, 403, "{headers:?}: {}", reply.body);
        assert!(reply.body.contains("cannot be sent from here"));
    }
    assert!(site.answers().is_empty());

    // Our own page, as Chromium posts it under Referrer-Policy: no-referrer.
    let own = site.post_with(&path, &fields, &[("Origin", "null"), ("Sec-Fetch-Site", "same-origin")]).await;
    assert_eq!(own.status, 200, "{}", own.body);
    site.stop().await;
}

#[tokio::test]
async fn a_form_is_bound_to_its_own_link() {
    let site = SurveySite::start().await;
    let case = site.open_case(JANE, "Printer offline");
    let janes = site.path_of(&site.invite(case, JANE));
    let other_case = site.open_case("joe@customer.example", "Scanner offline");
    let joes = site.path_of(&site.invite(other_case, "joe@customer.example"));
    let janes_tag = form_tag(&site.get(&janes).await.body);

    let wrong_form = site.post(&joes, &[("form", &janes_tag), ("score", "1"), ("solved", "no")]).await;
    let no_form = site.post(&joes, &[("score", "1"), ("solved", "no")]).await;

    assert_eq!(wrong_form.status, 403, "{}", wrong_form.body);
    assert!(wrong_form.body.contains("does not belong to this survey link"));
    assert_eq!(no_form.status, 403);
    assert!(site.answers().is_empty());
    site.stop().await;
}

#[tokio::test]
async fn an_oversized_body_is_refused() {
    let (site, _case, path) = site_with_link("Printer offline").await;
    let tag = form_tag(&site.get(&path).await.body);
    let origin = site.base_url.clone();
    let headers = [("Origin", origin.as_str()), ("Sec-Fetch-Site", "same-origin")];

    // A real body just over the limit...
    let comment = "x".repeat(17 * 1024);
    let big = site
        .post_with(&path, &[("form", &tag), ("score", "5"), ("solved", "yes"), ("comment", &comment)], &headers)
        .await;
    // ...and a declared length far over it, with no body sent at all.
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nOrigin: {origin}\r\n\
         Content-Length: 104857600\r\nConnection: close\r\n\r\n",
        site.addr
    );
    let declared = request_raw(site.addr, head.as_bytes()).await;
    // ...and a chunked body, whose length nobody declares, that grows past it.
    let form = form_encode(&[("form", &tag), ("score", "5"), ("solved", "yes"), ("comment", &comment)]);
    let chunked = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nOrigin: {origin}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{form}\r\n0\r\n\r\n",
        site.addr,
        form.len()
    );
    let streamed = request_raw(site.addr, chunked.as_bytes()).await;

    assert_eq!(big.status, 413, "{}", big.body);
    assert!(big.body.contains("Your answer is too long"));
    assert_eq!(declared.status, 413);
    assert_eq!(streamed.status, 413, "{}", streamed.body);
    assert!(site.answers().is_empty());
    site.stop().await;
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let (site, _case, path) = site_with_link("Printer offline").await;
    let tag = form_tag(&site.get(&path).await.body);
    let replies = [
        ("form", site.get(&path).await),
        ("thanks", site.post(&path, &[("form", &tag), ("score", "3"), ("solved", "yes")]).await),
        ("not valid", site.get("/survey/nonsense").await),
        ("not found", site.get("/").await),
        ("cross-site", site.post_with(&path, &[], &[("Origin", "https://evil.example")]).await),
    ];
    for (what, reply) in &replies {
        let csp = reply.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP"));
        assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("form-action 'self'"), "{what}: {csp}");
        assert!(!csp.contains("script-src") && !csp.contains("unsafe-inline"), "{what}: {csp}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
        assert_eq!(reply.header("referrer-policy"), Some("no-referrer"), "{what}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{what}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{what}");
    }
    site.stop().await;
}

#[tokio::test]
async fn a_hostile_subject_and_comment_are_shown_escaped() {
    let hostile = "<script>alert(1)</script><img src=x onerror=alert(2)>";
    let (site, _case, path) = site_with_link(&format!("Broken {hostile}")).await;

    let form = site.get(&path).await;
    let thanks = site.answer(&path, "1", "no", &format!("</textarea>{hostile}")).await;
    let again = site.get(&path).await;

    for (what, page) in [("form", &form), ("thanks", &thanks), ("form with answer", &again)] {
        assert_eq!(page.status, 200, "{what}: {}", page.body);
        assert!(!page.body.contains("<script>") && !page.body.contains("<img"), "{what}: {}", page.body);
        assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{what}: {}", page.body);
    }
    assert_eq!(again.body.matches("</textarea>").count(), 1, "the comment cannot close the textarea");
    site.stop().await;
}

#[tokio::test]
async fn serve_listens_on_survey_listen_and_stops_on_shutdown() {
    let site = SurveySite::start().await;
    let case = site.open_case(JANE, "Printer offline");
    let url = site.invite(case, JANE);
    // A second server through the daemon's entry point, on a port of its own.
    let port = free_port();
    let mut config = (*site.config).clone();
    config.web.listen = format!("127.0.0.1:{port}");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(casegate::web::serve(std::sync::Arc::new(config), shutdown.clone()));

    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert!(accepts_within(addr, std::time::Duration::from_secs(5)).await, "serve never listened");
    assert_eq!(http(addr, "GET", &site.path_of(&url), &[], b"").await.status, 200);

    shutdown.cancel();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), server).await;
    stopped.expect("serve stops within 10 s of shutdown").unwrap().unwrap();
    site.stop().await;
}

#[tokio::test]
async fn without_a_secret_serve_does_not_listen_and_stops_on_shutdown() {
    let install = crate::support::casegate::Installation::new("");
    let config = std::sync::Arc::new(casegate::config::Config::load(&install.config).unwrap());
    assert!(config.web.secret.is_none() && !casegate::survey::offered(&config));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(casegate::web::serve(config, shutdown.clone()));

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!server.is_finished(), "it waits for shutdown like every task of the daemon");
    shutdown.cancel();

    let stopped = tokio::time::timeout(std::time::Duration::from_secs(5), server).await;
    stopped.expect("stops on shutdown").unwrap().unwrap();
}
