//! dovecot.conf for a test Dovecot, in the syntax of its version: 2.3's
//! `plugin { push_notification_driverN = ox:... }`, or 2.4's
//! `push_notification <name> { ... }` blocks. Tests describe driver entries in
//! the 2.3 form (`ox:url=... user_from_metadata timeout_msecs=300`); on 2.4
//! each becomes a block with the equivalent keys.

use std::fmt::Write as _;

/// What a test Dovecot's configuration is made of (paths as Dovecot sees them).
pub struct Parts<'a> {
    pub t: &'a str,
    pub instance: &'a str,
    pub mail_location: &'a str,
    pub plugins: &'a [&'a str],
    pub lmtp_port: u16,
    pub imap_port: u16,
    pub lda_access: bool,
    /// (relay executable, spool, extra arguments) of the relay service.
    pub relay: Option<(String, String, String)>,
    pub extra: &'a [String],
    pub drivers: &'a [String],
}

pub fn render(v24: bool, p: &Parts<'_>) -> String {
    if v24 {
        render_24(p)
    } else {
        render_23(p)
    }
}

/// What both versions write alike: dovecot-lda's group, the relay's service
/// block, the test's own lines.
fn push_common(conf: &mut String, p: &Parts<'_>) {
    if p.lda_access {
        conf.push_str("protocol lda {\n  mail_access_groups = dovecot\n}\n");
    }
    if let Some((exe, spool, args)) = &p.relay {
        write!(
            conf,
            "service ox-push {{\n  executable = {exe} --spool {spool} {args}\n  user = {}\n  \
             process_limit = 1\n  process_min_avail = 1\n  vsz_limit = 1G\n  \
             unix_listener ox-push {{\n    mode = 0660\n    group = {}\n  }}\n}}\n",
            super::RELAY_USER,
            super::internal_group()
        )
        .unwrap();
    }
    for line in p.extra {
        conf.push_str(line);
        conf.push('\n');
    }
}

fn render_23(p: &Parts<'_>) -> String {
    let mut conf = format!(
        "base_dir = {t}/run\nstate_dir = {t}/state\ninstance_name = {inst}\n\
         log_path = {t}/dovecot.log\nmail_debug = yes\nlisten = 127.0.0.1\n\
         protocols = imap lmtp\nssl = no\ndisable_plaintext_auth = no\n\
         auth_mechanisms = plain\nfirst_valid_uid = 1000\n\
         default_internal_user = dovecot\ndefault_login_user = dovenull\n\
         mail_location = {loc}\nmail_attribute_dict = file:%h/dovecot-attributes\n\
         mail_plugin_dir = {t}/plugins\nmail_plugins = $mail_plugins {plugins}\n\
         passdb {{\n  driver = passwd-file\n  args = {t}/users\n}}\n\
         userdb {{\n  driver = passwd-file\n  args = {t}/users\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp}\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n\
         protocol imap {{\n  imap_metadata = yes\n}}\n",
        t = p.t,
        inst = p.instance,
        loc = p.mail_location,
        plugins = p.plugins.join(" "),
        imap = p.imap_port,
        lmtp = p.lmtp_port,
    );
    push_common(&mut conf, p);
    conf.push_str("plugin {\n");
    for (i, d) in p.drivers.iter().enumerate() {
        let key = if i == 0 {
            "push_notification_driver".to_string()
        } else {
            format!("push_notification_driver{}", i + 1)
        };
        writeln!(conf, "  {key} = {d}").unwrap();
    }
    conf.push_str("}\n");
    conf
}

fn render_24(p: &Parts<'_>) -> String {
    let (driver, path) = p
        .mail_location
        .split_once(':')
        .unwrap_or((p.mail_location, ""));
    let mut conf = format!(
        "dovecot_config_version = 2.4.1\ndovecot_storage_version = 2.4.1\n\
         base_dir = {t}/run\nstate_dir = {t}/state\ninstance_name = {inst}\n\
         log_path = {t}/dovecot.log\nmail_debug = yes\nlisten = 127.0.0.1\n\
         protocols = imap lmtp\nssl = no\nauth_allow_cleartext = yes\n\
         auth_mechanisms = plain\nfirst_valid_uid = 1000\n\
         mail_driver = {driver}\nmail_path = {path}\n\
         mail_attribute {{\n  dict file {{\n    path = %{{home}}/dovecot-attributes\n  }}\n}}\n\
         mail_plugin_dir = {t}/plugins\nmail_plugins {{\n{plugins}}}\n\
         passdb passwd-file {{\n  passwd_file_path = {t}/users\n  default_password_scheme = PLAIN\n}}\n\
         userdb passwd-file {{\n  passwd_file_path = {t}/users\n}}\n\
         service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  \
         inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service lmtp {{\n  inet_listener lmtp {{\n    listen = 127.0.0.1\n    port = {lmtp}\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n\
         protocol imap {{\n  imap_metadata = yes\n}}\n",
        t = p.t,
        inst = p.instance,
        plugins = p
            .plugins
            .iter()
            .map(|m| format!("  {m} = yes\n"))
            .collect::<String>(),
        imap = p.imap_port,
        lmtp = p.lmtp_port,
    );
    push_common(&mut conf, p);
    for (i, d) in p.drivers.iter().enumerate() {
        conf.push_str(&block(i, d));
    }
    conf
}

/// A 2.3 driver entry (`ox:k=v ...`) as a 2.4 `push_notification` block.
pub fn block(i: usize, entry: &str) -> String {
    let name = if i == 0 {
        "ox".to_string()
    } else {
        format!("ox{}", i + 1)
    };
    let mut out = format!("push_notification {name} {{\n");
    if i > 0 {
        out.push_str("  driver = ox\n");
    }
    let config = entry.split_once(':').map_or("", |(_, c)| c);
    for token in config.split(' ').filter(|t| !t.is_empty()) {
        let (k, v) = token.split_once('=').unwrap_or((token, ""));
        let line = match k {
            // 2.4 takes a literal % as is (2.3 needs %%).
            "url" => format!("ox_url = {}", v.replace("%%", "%")),
            "user_from_metadata" => "ox_user_from_metadata = yes".to_string(),
            // 2.4 refuses 0; the cache works in whole seconds, so 1 ms is none.
            "cache_lifetime" if v == "0" => "ox_cache_ttl = 1ms".to_string(),
            "cache_lifetime" => format!("ox_cache_ttl = {v}"),
            "timeout_msecs" => format!("http_client_request_timeout = {v}ms"),
            "max_retries" => format!(
                "http_client_request_max_attempts = {}",
                v.parse::<u32>().map_or(2, |n| n + 1)
            ),
            "notification_id" => "ox_push_notification_id = yes".to_string(),
            "folders" | "events" => format!("ox_push_{k} = {}", v.replace(',', " ")),
            "max_age" | "shutdown_timeout" | "relay_socket" => format!("ox_push_{k} = {v}"),
            // The 2.3 plugin's old spool keys: no 2.4 setting exists.
            "spool_dir" | "spool_max_size" | "spool_fsync" => continue,
            other => panic!("no Dovecot 2.4 equivalent for the driver key {other:?}"),
        };
        writeln!(out, "  {line}").unwrap();
    }
    out.push_str("}\n");
    out
}
