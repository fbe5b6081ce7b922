//! The bot's interactions endpoint against a live panel-api on real PostgreSQL:
//! signed requests in, replies, audit rows, the bot's tables and the panel's state
//! checked after each command. Discord's REST API is a local stand-in.

mod common;

use common::*;
use ferrodactyl_tests::Panel;
use serde_json::{json, Value};

// ---- the endpoint itself -------------------------------------------------------------

#[tokio::test]
async fn ping_is_answered_with_pong() {
    let t = TestBot::start().await;
    let (status, body) = t
        .post_signed(
            &json!({"id": "1", "application_id": APP_ID, "type": 1, "token": "tok", "version": 1}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"type": 1}));
}

#[tokio::test]
async fn a_bad_or_missing_signature_is_401() {
    let t = TestBot::start().await;
    let body = serde_json::to_vec(
        &json!({"id": "1", "application_id": APP_ID, "type": 1, "token": "tok", "version": 1}),
    )
    .unwrap();
    // No signature headers.
    let r = t.http.post(&t.url).body(body.clone()).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // A signature by another key.
    let other = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    use ed25519_dalek::Signer;
    let ts = "1700000000";
    let mut msg = ts.as_bytes().to_vec();
    msg.extend_from_slice(&body);
    let sig = other.sign(&msg);
    let r = t
        .http
        .post(&t.url)
        .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
        .header("x-signature-timestamp", ts)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Our key, but the body was changed after signing.
    let sig = t.signer.sign(&msg);
    let mut tampered = body.clone();
    tampered.push(b' ');
    let r = t
        .http
        .post(&t.url)
        .header("x-signature-ed25519", hex::encode(sig.to_bytes()))
        .header("x-signature-timestamp", ts)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(t.audit().await.is_empty(), "nothing ran");
}

#[tokio::test]
async fn commands_are_registered_with_discord_per_guild_or_globally() {
    let t = TestBot::start().await;
    let http = bot::gateway::http(&t.bot).unwrap();
    bot::commands::register(&http, Some(GUILD)).await.unwrap();
    bot::commands::register(&http, None).await.unwrap();
    let sent = t.discord.sent();
    let guild = sent
        .iter()
        .find(|s| s.path == format!("/api/v10/applications/{APP_ID}/guilds/{GUILD}/commands"))
        .unwrap_or_else(|| {
            let paths: Vec<_> = sent.iter().map(|s| (&s.method, &s.path)).collect();
            panic!("no guild registration among {paths:?}")
        });
    assert_eq!(guild.method, "PUT");
    let names: Vec<&str> = guild
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["setup", "config", "server", "user", "admin"]);
    let server = &guild.body[2];
    let subs: Vec<&str> = server["options"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        subs,
        ["list", "info", "start", "stop", "restart", "kill", "command"]
    );
    assert_eq!(
        server["options"][1]["options"][0]["autocomplete"], true,
        "<server> autocompletes"
    );
    let global = sent
        .iter()
        .find(|s| s.path == format!("/api/v10/applications/{APP_ID}/commands"))
        .expect("global registration");
    assert_eq!(global.method, "PUT");
    assert_eq!(global.body.as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn a_slow_command_is_deferred_and_finished_with_a_follow_up() {
    let t = TestBot::start_with(|c| c.defer_after_ms = 0).await;
    let admin = discord_admin();
    let resp = t.cmd(&admin, "admin", Some("status"), vec![]).await;
    assert_eq!(resp["type"], 5, "deferred: {resp}");
    assert!(is_ephemeral(&resp));
    let follow = t
        .discord
        .wait_for(|s| s.method == "PATCH" && s.path.contains("/messages/@original"))
        .await
        .expect("the follow-up reached Discord");
    assert!(
        follow
            .path
            .starts_with(&format!("/api/v10/webhooks/{APP_ID}/token-")),
        "{}",
        follow.path
    );
    assert_eq!(
        follow.body["embeds"][0]["title"], "Bot status",
        "{}",
        follow.body
    );
}

#[tokio::test]
async fn each_user_is_rate_limited() {
    let t = TestBot::start_with(|c| c.rate_limit_per_minute = 2).await;
    let m = member(1);
    for _ in 0..2 {
        let r = t.cmd(&m, "config", Some("show"), vec![]).await;
        assert!(text(&r).contains("no panel configured"), "{r}");
    }
    let r = t.cmd(&m, "config", Some("show"), vec![]).await;
    assert!(text(&r).contains("too quickly"), "{r}");
    assert_eq!(t.last_audit().await.3, "rate_limited");
    // Another user is not affected.
    let r = t.cmd(&member(2), "config", Some("show"), vec![]).await;
    assert!(text(&r).contains("no panel configured"), "{r}");
}

// ---- /setup ----------------------------------------------------------------------------

#[tokio::test]
async fn setup_needs_a_discord_administrator() {
    let t = TestBot::start().await;
    let r = t
        .cmd(
            &member(1),
            "setup",
            None,
            vec![ro("admin_role", ADMIN_ROLE)],
        )
        .await;
    assert!(text(&r).contains("Administrator"), "{r}");
    assert!(is_ephemeral(&r));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM guild_configs")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let a = t.last_audit().await;
    assert_eq!((a.1.as_str(), a.3.as_str()), ("setup", "denied"));
}

#[tokio::test]
async fn setup_sets_the_admin_role_which_then_grants_admin_commands() {
    let t = TestBot::start().await;
    let mut role_holder = member(3);
    role_holder.roles = vec![ADMIN_ROLE];
    // Before /setup, the role means nothing.
    let r = t.cmd(&role_holder, "admin", Some("status"), vec![]).await;
    assert!(text(&r).contains("admin role"), "{r}");

    let r = t
        .cmd(
            &discord_admin(),
            "setup",
            None,
            vec![ro("admin_role", ADMIN_ROLE)],
        )
        .await;
    assert!(text(&r).contains(&format!("<@&{ADMIN_ROLE}>")), "{r}");
    let role: Option<i64> =
        sqlx::query_scalar("SELECT admin_role_id FROM guild_configs WHERE guild_id = $1")
            .bind(GUILD as i64)
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(role, Some(ADMIN_ROLE as i64));
    let a = t.last_audit().await;
    assert_eq!(a.1, "setup");
    assert_eq!(a.2.as_deref(), Some(format!("guild:{GUILD}").as_str()));
    assert_eq!(a.3, "success");

    let r = t.cmd(&role_holder, "admin", Some("status"), vec![]).await;
    assert_eq!(r["data"]["embeds"][0]["title"], "Bot status", "{r}");
    // Members without the role are still refused.
    let r = t.cmd(&member(4), "admin", Some("status"), vec![]).await;
    assert!(text(&r).contains("admin role"), "{r}");
}

// ---- /config -------------------------------------------------------------------------

#[tokio::test]
async fn config_setup_validates_stores_encrypted_and_show_masks() {
    let p = Panel::start().await.unwrap();
    let acct = p.account("alice", false, 1).await.unwrap();
    let admin = p.admin().await.unwrap();
    let t = TestBot::start().await;
    let m = member(1);

    let r = configure(&t, &m, &p.url, &acct.key, Some(&admin.key)).await;
    assert!(is_ephemeral(&r));
    let out = text(&r);
    assert!(out.contains("saved"), "{r}");
    assert!(
        !out.contains(&acct.key) && !out.contains(&admin.key),
        "keys are masked: {out}"
    );
    assert!(out.contains(&acct.key[..9]), "{out}");

    // Stored, but only as Fernet tokens.
    let stored = t.all_stored_text().await;
    for secret in [
        acct.key.as_str(),
        admin.key.as_str(),
        p.url.as_str(),
        &acct.key[5..],
    ] {
        assert!(
            !stored.contains(secret),
            "plaintext {secret} stored: {stored}"
        );
    }
    let (url_enc, key_enc): (String, String) = sqlx::query_as(
        "SELECT panel_url_enc, api_key_enc FROM user_configs WHERE discord_user_id = $1",
    )
    .bind(m.id as i64)
    .fetch_one(&t.db)
    .await
    .unwrap();
    assert_eq!(t.bot.vault.decrypt(&url_enc).unwrap(), p.url);
    assert_eq!(t.bot.vault.decrypt(&key_enc).unwrap(), acct.key);
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        ("config setup", Some("panel"), "success")
    );

    let r = t.cmd(&m, "config", Some("show"), vec![]).await;
    assert!(is_ephemeral(&r));
    let out = text(&r);
    assert!(
        out.contains(&acct.key[..9]) && !out.contains(&acct.key),
        "{out}"
    );
    assert!(!out.contains(&admin.key), "{out}");

    let r = t.cmd(&m, "config", Some("remove"), vec![]).await;
    assert!(text(&r).contains("removed"), "{r}");
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM user_configs WHERE api_key_enc IS NOT NULL")
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!(n, 0);
    let r = t.cmd(&m, "config", Some("show"), vec![]).await;
    assert!(text(&r).contains("no panel configured"), "{r}");
    // No secret reached the audit log either.
    let stored = t.all_stored_text().await;
    assert!(
        !stored.contains(&acct.key) && !stored.contains(&p.url),
        "{stored}"
    );
}

#[tokio::test]
async fn config_setup_refuses_a_key_the_panel_rejects_and_saves_nothing() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let fake = "ptlc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let r = configure(&t, &member(1), &p.url, fake, None).await;
    let out = text(&r);
    assert!(
        out.contains("401") && out.contains("nothing was saved"),
        "{out}"
    );
    assert!(!out.contains(fake));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_configs")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    assert_eq!(t.last_audit().await.3, "invalid");
    // A valid client key with a bad application key is refused as a whole.
    let acct = p.account("bob", false, 1).await.unwrap();
    let r = configure(&t, &member(1), &p.url, &acct.key, Some(&acct.key)).await;
    assert!(text(&r).contains("403"), "{r}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_configs")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn config_setup_with_an_unreachable_panel_says_so_briefly() {
    let t = TestBot::start().await;
    let url = format!("http://127.0.0.1:{}", ferrodactyl_tests::closed_port());
    let r = configure(
        &t,
        &member(1),
        &url,
        "ptlc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        None,
    )
    .await;
    let out = text(&r);
    assert!(out.contains("Could not reach the panel"), "{out}");
    assert!(!out.contains("127.0.0.1"), "no URL in the reply: {out}");
    let a = t.last_audit().await;
    assert_eq!(
        (a.3.as_str(), a.4.as_deref()),
        ("error", Some("panel unreachable"))
    );
}

#[tokio::test]
async fn config_setup_refuses_urls_that_are_not_panels() {
    let t = TestBot::start().await;
    for bad in [
        "ftp://panel",
        "not a url",
        "http://user:pw@panel.example.com",
    ] {
        let r = configure(&t, &member(1), bad, "ptlc_x", None).await;
        assert!(text(&r).contains("panel_url"), "{bad}: {r}");
    }
}

// ---- /user ---------------------------------------------------------------------------

async fn admin_setup(t: &TestBot, p: &Panel) -> (Actor, ferrodactyl_tests::Account) {
    let admin = p.admin().await.unwrap();
    let who = discord_admin();
    let ck = client_key(p, admin.id).await;
    let r = configure(t, &who, &p.url, &ck, Some(&admin.key)).await;
    assert!(text(&r).contains("saved"), "{r}");
    (who, admin)
}

#[tokio::test]
async fn user_create_generates_a_password_shown_only_to_the_caller() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let (who, admin) = admin_setup(&t, &p).await;
    let r = t
        .cmd(
            &who,
            "user",
            Some("create"),
            vec![
                so("username", "carol"),
                so("email", "carol@example.com"),
                so("first_name", "Carol"),
                so("last_name", "C"),
            ],
        )
        .await;
    assert!(is_ephemeral(&r), "{r}");
    let out = text(&r);
    assert!(out.contains("Created panel user **carol**"), "{out}");
    let pw = out
        .split("||`")
        .nth(1)
        .and_then(|s| s.split("`||").next())
        .expect("password in the reply");
    assert_eq!(pw.chars().count(), 20);
    assert!(
        pw.chars().filter(|c| c.is_ascii_alphanumeric()).count() >= 10
            && pw.chars().any(|c| c.is_ascii_lowercase())
            && pw.chars().any(|c| c.is_ascii_uppercase()),
        "a strong password: {pw}"
    );
    assert!(
        t.discord.sent().is_empty(),
        "nothing about it went anywhere but the ephemeral reply"
    );
    // On the panel, with that password.
    let l = p
        .client(&admin.key)
        .list_users("filter[username]=carol")
        .await
        .unwrap();
    assert_eq!(l.data.len(), 1);
    let id = l.data[0].attributes.id;
    let hash: String = sqlx::query_scalar("SELECT password FROM users WHERE id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert!(
        bcrypt::verify(pw, &hash.replacen("$2y$", "$2b$", 1)).unwrap(),
        "the shown password is the user's"
    );
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        (
            "user create",
            Some(format!("user:{id}").as_str()),
            "success"
        )
    );
    assert!(
        !t.all_stored_text().await.contains(pw),
        "the password is not stored or audited"
    );
}

#[tokio::test]
async fn user_list_info_update_delete_against_the_panel() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let (who, admin) = admin_setup(&t, &p).await;
    let dave = p.account("dave", false, 1).await.unwrap();

    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    let out = text(&r);
    assert!(
        out.contains("**admin**") && out.contains("**dave**"),
        "{out}"
    );
    assert!(out.contains("2 users"), "{out}");

    let r = t
        .cmd(&who, "user", Some("info"), vec![so("user", "dave")])
        .await;
    assert_eq!(
        r["data"]["embeds"][0]["title"],
        format!("dave (id {})", dave.id),
        "{r}"
    );
    let r = t
        .cmd(
            &who,
            "user",
            Some("info"),
            vec![so("user", "dave@example.com")],
        )
        .await;
    assert!(text(&r).contains(&dave.uuid), "{r}");
    let r = t
        .cmd(&who, "user", Some("info"), vec![so("user", "99999")])
        .await;
    assert!(text(&r).contains("404"), "{r}");

    let r = t
        .cmd(
            &who,
            "user",
            Some("update"),
            vec![
                so("user", &dave.id.to_string()),
                so("first_name", "David"),
                so("email", "david@example.com"),
            ],
        )
        .await;
    assert!(text(&r).contains("Updated panel user **dave**"), "{r}");
    let u = p
        .client(&admin.key)
        .get_user(dave.id)
        .await
        .unwrap()
        .attributes;
    assert_eq!(
        (
            u.first_name.as_str(),
            u.email.as_str(),
            u.last_name.as_str()
        ),
        ("David", "david@example.com", "User")
    );
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        (
            "user update",
            Some(format!("user:{}", dave.id).as_str()),
            "success"
        )
    );

    // Invalid input is the panel's 422, shown as such.
    let r = t
        .cmd(
            &who,
            "user",
            Some("update"),
            vec![so("user", "dave"), so("email", "not-an-email")],
        )
        .await;
    assert!(text(&r).contains("422"), "{r}");

    // Delete needs the word DELETE.
    let r = t
        .cmd(
            &who,
            "user",
            Some("delete"),
            vec![so("user", "dave"), so("confirm", "yes")],
        )
        .await;
    assert!(text(&r).contains("DELETE"), "{r}");
    assert!(
        p.client(&admin.key).get_user(dave.id).await.is_ok(),
        "still there"
    );
    let r = t
        .cmd(
            &who,
            "user",
            Some("delete"),
            vec![so("user", "dave"), so("confirm", "DELETE")],
        )
        .await;
    assert!(text(&r).contains("Deleted panel user **dave**"), "{r}");
    assert_eq!(
        p.client(&admin.key)
            .get_user(dave.id)
            .await
            .unwrap_err()
            .status(),
        Some(404)
    );
    let a = t.last_audit().await;
    assert_eq!((a.1.as_str(), a.3.as_str()), ("user delete", "success"));
}

#[tokio::test]
async fn user_commands_are_refused_before_any_panel_call_without_permission() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let admin = p.admin().await.unwrap();
    let m = member(1);
    // The member even holds an admin's keys; the bot's permissions still apply.
    let ck = client_key(&p, admin.id).await;
    let r = configure(&t, &m, &p.url, &ck, Some(&admin.key)).await;
    assert!(text(&r).contains("saved"), "{r}");
    let r = t
        .cmd(
            &m,
            "user",
            Some("create"),
            vec![
                so("username", "eve"),
                so("email", "eve@example.com"),
                so("first_name", "E"),
                so("last_name", "V"),
            ],
        )
        .await;
    assert!(text(&r).contains("can_create_users"), "{r}");
    assert_eq!(t.last_audit().await.3, "denied");
    for sub in ["list", "info", "delete"] {
        let r = t
            .cmd(
                &m,
                "user",
                Some(sub),
                vec![so("user", "admin"), so("confirm", "DELETE")],
            )
            .await;
        assert!(text(&r).contains("admin role"), "{sub}: {r}");
    }
    let l = p.client(&admin.key).list_users("").await.unwrap();
    assert_eq!(l.data.len(), 1, "no user created or deleted");

    // Granted can_create_users, the same member may create.
    t.cmd(
        &discord_admin(),
        "admin",
        Some("permissions"),
        vec![uo("user", m.id), bo("can_create_users", true)],
    )
    .await;
    let r = t
        .cmd(
            &m,
            "user",
            Some("create"),
            vec![
                so("username", "eve"),
                so("email", "eve@example.com"),
                so("first_name", "E"),
                so("last_name", "V"),
                so("password", "Sup3r-secret-pw"),
            ],
        )
        .await;
    assert!(text(&r).contains("Created panel user **eve**"), "{r}");
    assert!(!text(&r).contains("Sup3r-secret-pw"));
    assert_eq!(
        p.client(&admin.key)
            .list_users("")
            .await
            .unwrap()
            .data
            .len(),
        2
    );
}

#[tokio::test]
async fn user_commands_need_an_application_key() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let acct = p.account("frank", false, 1).await.unwrap();
    let who = discord_admin();
    configure(&t, &who, &p.url, &acct.key, None).await;
    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    assert!(text(&r).contains("application_key"), "{r}");
}

#[tokio::test]
async fn denied_commands_never_reach_the_panel() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let admin = p.admin().await.unwrap();
    let m = member(1);
    let ck = client_key(&p, admin.id).await;
    let r = configure(&t, &m, &p.url, &ck, Some(&admin.key)).await;
    assert!(text(&r).contains("saved"), "{r}");
    t.cmd(
        &discord_admin(),
        "admin",
        Some("permissions"),
        vec![uo("user", m.id), bo("can_manage_servers", false)],
    )
    .await;
    // The panel stamps a key's last use at most once a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let used = || async {
        sqlx::query_as::<_, (i64, Option<chrono::DateTime<chrono::Utc>>)>(
            "SELECT id, last_used_at FROM api_keys ORDER BY id",
        )
        .fetch_all(&p.db)
        .await
        .unwrap()
    };
    let before = used().await;
    let user_opts = vec![
        so("username", "eve"),
        so("email", "eve@example.com"),
        so("first_name", "E"),
        so("last_name", "V"),
        so("user", "admin"),
        so("confirm", "DELETE"),
    ];
    for (cmd, sub) in [
        ("user", "create"),
        ("user", "list"),
        ("user", "info"),
        ("user", "update"),
        ("user", "delete"),
        ("server", "list"),
        ("server", "start"),
    ] {
        let mut opts = user_opts.clone();
        opts.push(so("server", "abcd1234"));
        let r = t.cmd(&m, cmd, Some(sub), opts).await;
        assert!(is_ephemeral(&r), "{cmd} {sub}: {r}");
        let a = t.last_audit().await;
        assert_eq!(
            (a.1, a.3.as_str()),
            (format!("{cmd} {sub}"), "denied"),
            "{r}"
        );
    }
    assert_eq!(used().await, before, "no key was used on the panel");
    // The same keys do reach the panel for a permitted command.
    let r = t
        .cmd(&discord_admin(), "config", Some("show"), vec![])
        .await;
    assert!(text(&r).contains("no panel configured"), "{r}");
    let r = configure(&t, &discord_admin(), &p.url, &ck, Some(&admin.key)).await;
    assert!(text(&r).contains("saved"), "{r}");
    assert_ne!(used().await, before, "a real call does stamp the key");
}

#[tokio::test]
async fn every_command_is_audited_and_no_secret_is_stored() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let admin = p.admin().await.unwrap();
    let ck = client_key(&p, admin.id).await;
    let boss = discord_admin();
    let m = member(9);
    let given_pw = "Giv3n-password-xyz";
    let new_pw = "N3w-password-xyz";
    let mut expected = Vec::new();
    let mut run = |c: &'static str| expected.push(c.to_string());

    t.cmd(&boss, "setup", None, vec![ro("admin_role", ADMIN_ROLE)])
        .await;
    run("setup");
    configure(&t, &boss, &p.url, &ck, Some(&admin.key)).await;
    run("config setup");
    t.cmd(&boss, "config", Some("show"), vec![]).await;
    run("config show");
    let r = t
        .cmd(
            &boss,
            "user",
            Some("create"),
            vec![
                so("username", "gen"),
                so("email", "gen@example.com"),
                so("first_name", "G"),
                so("last_name", "N"),
            ],
        )
        .await;
    run("user create");
    let generated = text(&r)
        .split("||`")
        .nth(1)
        .and_then(|s| s.split("`||").next())
        .expect("a generated password")
        .to_string();
    let r = t
        .cmd(
            &boss,
            "user",
            Some("create"),
            vec![
                so("username", "given"),
                so("email", "given@example.com"),
                so("first_name", "G"),
                so("last_name", "V"),
                so("password", given_pw),
            ],
        )
        .await;
    run("user create");
    assert!(
        !text(&r).contains(given_pw),
        "a given password is not echoed: {r}"
    );
    t.cmd(&boss, "user", Some("list"), vec![]).await;
    run("user list");
    t.cmd(&boss, "user", Some("info"), vec![so("user", "gen")])
        .await;
    run("user info");
    let r = t
        .cmd(
            &boss,
            "user",
            Some("update"),
            vec![so("user", "given"), so("password", new_pw)],
        )
        .await;
    run("user update");
    assert!(
        text(&r).contains("password was changed") && !text(&r).contains(new_pw),
        "{r}"
    );
    t.cmd(
        &boss,
        "user",
        Some("delete"),
        vec![so("user", "gen"), so("confirm", "DELETE")],
    )
    .await;
    run("user delete");
    t.cmd(&boss, "admin", Some("status"), vec![]).await;
    run("admin status");
    t.cmd(&boss, "admin", Some("users"), vec![]).await;
    run("admin users");
    t.cmd(&boss, "admin", Some("audit"), vec![]).await;
    run("admin audit");
    t.cmd(
        &boss,
        "admin",
        Some("permissions"),
        vec![uo("user", m.id), io("max_servers", 3)],
    )
    .await;
    run("admin permissions");
    let r = t.cmd(&boss, "server", Some("list"), vec![]).await;
    run("server list");
    assert!(text(&r).contains("no servers"), "{r}");
    t.cmd(
        &boss,
        "admin",
        Some("reset"),
        vec![uo("user", m.id), so("confirm", "RESET")],
    )
    .await;
    run("admin reset");
    t.cmd(&boss, "config", Some("remove"), vec![]).await;
    run("config remove");

    let rows = t.audit().await;
    let commands: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    assert_eq!(commands, expected, "one row per command, in order");
    for r in &rows {
        assert_eq!(r.0, boss.id as i64, "who: {r:?}");
        assert_eq!(r.3, "success", "{r:?}");
    }
    let times: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT created_at FROM audit_logs ORDER BY id")
            .fetch_all(&t.db)
            .await
            .unwrap();
    let now = chrono::Utc::now();
    assert!(times.iter().all(|c| (now - *c).num_seconds() < 120), "when");
    let stored = t.all_stored_text().await;
    let host = p.url.trim_start_matches("http://").to_string();
    for secret in [
        ck.as_str(),
        &ck[16..],
        admin.key.as_str(),
        &admin.key[16..],
        host.as_str(),
        generated.as_str(),
        given_pw,
        new_pw,
    ] {
        assert!(!stored.contains(secret), "{secret} stored: {stored}");
    }
}

// ---- panel errors --------------------------------------------------------------------

#[tokio::test]
async fn a_panel_401_says_to_run_config_setup_again() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let (who, _admin) = admin_setup(&t, &p).await;
    // The key is revoked on the panel.
    sqlx::query("DELETE FROM api_keys")
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    let out = text(&r);
    assert!(
        out.contains("401") && out.contains("/config setup"),
        "{out}"
    );
    let a = t.last_audit().await;
    assert_eq!((a.3.as_str(), a.4.as_deref()), ("error", Some("panel 401")));
}

#[tokio::test]
async fn a_panel_403_names_the_missing_permission() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let admin = p.admin().await.unwrap();
    let who = discord_admin();
    let ck = client_key(&p, admin.id).await;
    let r = configure(&t, &who, &p.url, &ck, Some(&admin.key)).await;
    assert!(text(&r).contains("saved"), "{r}");
    // The key's owner loses root admin on the panel.
    sqlx::query("UPDATE users SET root_admin = false")
        .execute(&p.db)
        .await
        .unwrap();
    p.settle().await;
    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    let out = text(&r);
    assert!(
        out.contains("403") && out.contains("users: read & write"),
        "{out}"
    );
}

#[tokio::test]
async fn a_panel_429_is_honoured_with_its_retry_after() {
    let p = Panel::start_with(|c| c.application_rate_limit = 3)
        .await
        .unwrap();
    let t = TestBot::start().await;
    let (who, _admin) = admin_setup(&t, &p).await;
    let mut limited = None;
    for _ in 0..5 {
        let r = t.cmd(&who, "user", Some("list"), vec![]).await;
        if text(&r).contains("rate limiting") {
            limited = Some(r);
            break;
        }
    }
    let r = limited.expect("the panel's limit was reached");
    // The wait is the panel's Retry-After (3 a minute: at most 20 s), not a default.
    let secs: u64 = text(&r)
        .split("try again in ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a wait in the reply: {r}"));
    assert!((1..=20).contains(&secs), "{secs} s: {r}");
    let a = t.last_audit().await;
    assert_eq!(
        (a.3.as_str(), a.4.as_deref()),
        ("rate_limited", Some("panel 429"))
    );
    // Until Retry-After has passed the bot does not call the panel again.
    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    assert!(text(&r).contains("rate limiting"), "{r}");
    let a = t.last_audit().await;
    assert_eq!(
        (a.3.as_str(), a.4.as_deref()),
        ("rate_limited", Some("panel cooldown"))
    );
}

#[tokio::test]
async fn a_panel_500_gets_a_short_reply_without_detail() {
    let p = Panel::start().await.unwrap();
    let t = TestBot::start().await;
    let (who, _admin) = admin_setup(&t, &p).await;
    // The panel's database breaks under it.
    sqlx::query("ALTER TABLE users RENAME COLUMN email TO email_gone")
        .execute(&p.db)
        .await
        .unwrap();
    let r = t.cmd(&who, "user", Some("list"), vec![]).await;
    let out = text(&r);
    assert!(
        out.contains("having trouble") && out.contains("500"),
        "{out}"
    );
    assert!(
        !out.contains("email_gone") && !out.contains("column"),
        "{out}"
    );
    let a = t.last_audit().await;
    assert_eq!((a.3.as_str(), a.4.as_deref()), ("error", Some("panel 500")));
}

// ---- /admin --------------------------------------------------------------------------

#[tokio::test]
async fn admin_commands_are_for_bot_admins_only() {
    let t = TestBot::start().await;
    for sub in ["status", "users", "audit", "permissions", "reset"] {
        let r = t
            .cmd(
                &member(1),
                "admin",
                Some(sub),
                vec![uo("user", 1), so("confirm", "RESET")],
            )
            .await;
        assert!(text(&r).contains("admin role"), "{sub}: {r}");
        let a = t.last_audit().await;
        assert_eq!((a.1, a.3), (format!("admin {sub}"), "denied".to_string()));
    }
}

#[tokio::test]
async fn admin_permissions_users_reset_status_and_audit() {
    let p = Panel::start().await.unwrap();
    let acct = p.account("gina", false, 1).await.unwrap();
    let t = TestBot::start().await;
    let boss = discord_admin();
    let m = member(7);
    configure(&t, &m, &p.url, &acct.key, None).await;

    let r = t
        .cmd(
            &boss,
            "admin",
            Some("permissions"),
            vec![
                uo("user", m.id),
                bo("can_manage_servers", false),
                io("max_servers", 2),
            ],
        )
        .await;
    assert!(
        text(&r).contains("manage servers: no") && text(&r).contains("max servers: 2"),
        "{r}"
    );
    let (ms, cu, max): (bool, bool, Option<i32>) =
        sqlx::query_as("SELECT can_manage_servers, can_create_users, max_servers FROM user_configs WHERE discord_user_id = $1")
            .bind(m.id as i64)
            .fetch_one(&t.db)
            .await
            .unwrap();
    assert_eq!((ms, cu, max), (false, false, Some(2)));
    let a = t.last_audit().await;
    assert_eq!(
        (a.1.as_str(), a.2.as_deref(), a.3.as_str()),
        (
            "admin permissions",
            Some(format!("discord:{}", m.id).as_str()),
            "success"
        )
    );

    // The permission is enforced before any panel call.
    let r = t.cmd(&m, "server", Some("list"), vec![]).await;
    assert!(text(&r).contains("can_manage_servers"), "{r}");
    assert_eq!(t.last_audit().await.3, "denied");

    let r = t.cmd(&boss, "admin", Some("users"), vec![]).await;
    assert!(is_ephemeral(&r));
    let out = text(&r);
    assert!(
        out.contains(&format!("<@{}> — panel: yes, servers: no", m.id)),
        "{out}"
    );
    assert!(!out.contains(&acct.key) && !out.contains(&p.url), "{out}");

    let r = t.cmd(&boss, "admin", Some("status"), vec![]).await;
    let out = text(&r);
    assert!(out.contains("Users with a panel: 1"), "{out}");

    let r = t
        .cmd(
            &boss,
            "admin",
            Some("audit"),
            vec![io("limit", 50), uo("user", m.id)],
        )
        .await;
    let out = text(&r);
    assert!(
        out.contains("/config setup") && out.contains("/server list") && !out.contains("/admin"),
        "{out}"
    );
    let r = t
        .cmd(
            &boss,
            "admin",
            Some("audit"),
            vec![so("action", "permissions")],
        )
        .await;
    let out = text(&r);
    assert!(
        out.contains("/admin permissions") && !out.contains("/config setup"),
        "{out}"
    );
    let r = t
        .cmd(&boss, "admin", Some("audit"), vec![io("limit", 1)])
        .await;
    assert_eq!(text(&r).matches("`#").count(), 1, "{r}");

    // Reset needs the word RESET, then everything about the user goes.
    let r = t
        .cmd(
            &boss,
            "admin",
            Some("reset"),
            vec![uo("user", m.id), so("confirm", "reset")],
        )
        .await;
    assert!(text(&r).contains("RESET"), "{r}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_configs")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let r = t
        .cmd(
            &boss,
            "admin",
            Some("reset"),
            vec![uo("user", m.id), so("confirm", "RESET")],
        )
        .await;
    assert!(text(&r).contains("is reset"), "{r}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM user_configs")
        .fetch_one(&t.db)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let r = t.cmd(&m, "config", Some("show"), vec![]).await;
    assert!(text(&r).contains("no panel configured"), "{r}");

    let stored = t.all_stored_text().await;
    assert!(
        !stored.contains(&acct.key) && !stored.contains(&p.url),
        "{stored}"
    );
}

// ---- /server without a panel -----------------------------------------------------------

#[tokio::test]
async fn server_commands_without_a_configuration_say_to_run_config_setup() {
    let t = TestBot::start().await;
    for sub in ["list", "info", "start", "command"] {
        let r = t
            .cmd(
                &member(1),
                "server",
                Some(sub),
                vec![so("server", "abcd1234"), so("command", "say hi")],
            )
            .await;
        assert!(text(&r).contains("/config setup"), "{sub}: {r}");
    }
}

#[tokio::test]
async fn a_button_that_is_not_ours_is_refused() {
    let t = TestBot::start().await;
    let mut body = t.interaction(
        3,
        &member(1),
        json!({"custom_id": "something:else", "component_type": 2}),
    );
    body["message"] = message_json();
    let (status, r) = t.post_signed(&body).await;
    assert_eq!(status, 200, "{r}");
    assert!(text(&r).contains("not ours"), "{r}");
}

pub fn message_json() -> Value {
    json!({
        "id": "8000000000000000001", "channel_id": "6000000000000000001",
        "author": {"id": APP_ID, "username": "bot", "discriminator": "0", "global_name": null, "avatar": null, "bot": true},
        "content": "", "timestamp": "2025-01-01T00:00:00.000000+00:00", "edited_timestamp": null,
        "tts": false, "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": false, "type": 0, "flags": 0, "components": []
    })
}
