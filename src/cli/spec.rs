//! The command line as data: every command, its arguments and its flags, with their help. The
//! parser (`Args` in the parent module), `--help` of each command, the overview, the man page and the shell
//! completions are all made from this one table, so none of them can drift from the others.

/// One flag of a command.
#[derive(Debug)]
pub struct Flag {
    /// The long name, without `--`.
    pub long: &'static str,
    /// The one-letter alias, if any (`-c` for `--config`).
    pub short: Option<char>,
    /// The value's name (`FILE`), or None for a switch.
    pub value: Option<Value>,
    /// May be given more than once.
    pub many: bool,
    /// One line of help.
    pub help: &'static str,
}

/// What a flag's value is, for the help text and for what the shells complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    /// A file name.
    File,
    /// A directory name.
    Dir,
    /// Anything else, shown under this name.
    Word(&'static str),
    /// One of these words.
    OneOf(&'static str, &'static [&'static str]),
}

impl Value {
    /// The name shown in help (`FILE`, `DIR`, `ADDR`).
    pub fn name(self) -> &'static str {
        match self {
            Value::File => "FILE",
            Value::Dir => "DIR",
            Value::Word(w) | Value::OneOf(w, _) => w,
        }
    }
}

/// One command (`hookcast publish …`).
#[derive(Debug)]
pub struct Command {
    /// Its name.
    pub name: &'static str,
    /// What follows the flags in the synopsis (`TOPIC DATA|-`).
    pub args: &'static str,
    /// One line: what it does.
    pub about: &'static str,
    /// More, for its `--help` and the man page (may be empty).
    pub detail: &'static str,
    /// Words its first argument may be (`list`, `show`, … for `runs`), for the completions.
    pub actions: &'static [&'static str],
    /// Takes the client flags (`--url`, `--token`, `--token-file`).
    pub client: bool,
    /// Its own flags.
    pub flags: &'static [Flag],
}

const fn flag(long: &'static str, short: Option<char>, value: Option<Value>, help: &'static str) -> Flag {
    Flag { long, short, value, many: false, help }
}

const fn many(long: &'static str, short: Option<char>, value: Value, help: &'static str) -> Flag {
    Flag { long, short, value: Some(value), many: true, help }
}

const fn switch(long: &'static str, short: Option<char>, help: &'static str) -> Flag {
    Flag { long, short, value: None, many: false, help }
}

/// `--url`, `--token`, `--token-file`: every command that talks to a daemon takes them.
pub const CLIENT_FLAGS: &[Flag] = &[
    flag(
        "url",
        Some('u'),
        Some(Value::Word("URL")),
        "the daemon: http:// or https://, with a path prefix if it has one (default $HOOKCAST_URL, else http://127.0.0.1:9000)",
    ),
    flag("token", Some('t'), Some(Value::Word("TOKEN")), "bearer token (default $HOOKCAST_TOKEN)"),
    flag(
        "token-file",
        None,
        Some(Value::File),
        "read the bearer token from this file, first line (default $HOOKCAST_TOKEN_FILE); keeps it out of ps and shell history",
    ),
];

/// Flags of `sign` and `send`.
const SIGN_FLAGS: &[Flag] = &[
    flag(
        "provider",
        Some('p'),
        Some(Value::OneOf(
            "PROVIDER",
            &["github", "gitlab", "gitea", "forgejo", "bitbucket", "stripe", "slack", "standard-webhooks", "hmac"],
        )),
        "sign as this provider would",
    ),
    flag(
        "secret",
        Some('s'),
        Some(Value::Word("SECRET")),
        "the secret, or @FILE to read it (default $HOOKCAST_SECRET)",
    ),
    flag("event", Some('e'), Some(Value::Word("EVENT")), "the provider's event name (default push)"),
    flag("id", None, Some(Value::Word("ID")), "the delivery id (default a random UUID)"),
    flag("content-type", None, Some(Value::Word("TYPE")), "(send) Content-Type of the body (default application/json)"),
    flag("hmac-header", None, Some(Value::Word("NAME")), "(hmac) header carrying the signature"),
    flag("hmac-algorithm", None, Some(Value::OneOf("ALG", &["sha1", "sha256", "sha512"])), "(hmac) hash"),
    flag("hmac-encoding", None, Some(Value::OneOf("ENC", &["hex", "base64"])), "(hmac) signature encoding"),
    flag("hmac-prefix", None, Some(Value::Word("TEXT")), "(hmac) text before the signature, like sha256="),
];

const JSON: Flag = switch("json", Some('j'), "print JSON instead of text");

/// Every command, in the order the help lists them.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "serve",
        args: "",
        about: "run the daemon",
        detail: "Without --config: the embedded default (loopback on 127.0.0.1:9000, topic `demo` and hook `demo` \
                 open to loopback clients). SIGHUP reloads the configuration, SIGTERM drains and stops.",
        actions: &[],
        client: false,
        flags: &[
            flag("config", Some('c'), Some(Value::File), "the configuration file (JSON)"),
            many("hooks", None, Value::File, "an adnanh/webhook hooks file (JSON), besides the config's hooks"),
            flag("listen", Some('l'), Some(Value::Word("ADDR")), "address:port to listen on (:9001 is every IPv4 interface; port 0 picks a free one, the log says which)"),
            flag("state-dir", Some('d'), Some(Value::Dir), "where the journal lives (events, deliveries and runs survive restarts)"),
        ],
    },
    Command {
        name: "webhook",
        args: "[-hooks FILE]... [-ip IP] [-port N] [-verbose|-debug] [-hotreload] [-header N=V]... [-config FILE]",
        about: "run the daemon with adnanh/webhook 2.8's command line (also when started under the name `webhook`)",
        detail: "-hooks, -ip, -port, -verbose, -debug, -hotreload, -urlprefix hooks, -http-methods, -header, \
                 -x-request-id and -nopanic as in adnanh/webhook; -config FILE adds a hookcast config. \
                 See docs/migrating-from-webhook.md.",
        actions: &[],
        client: false,
        flags: &[],
    },
    Command {
        name: "check",
        args: "[FILE]",
        about: "validate a config (and hooks files, reading their secrets): exit 0, or the bad field's JSON path and exit 1",
        detail: "",
        actions: &[],
        client: false,
        flags: &[
            flag("config", Some('c'), Some(Value::File), "the configuration file (or give it as FILE)"),
            many("hooks", None, Value::File, "an adnanh/webhook hooks file"),
        ],
    },
    Command {
        name: "publish",
        args: "TOPIC DATA|-",
        about: "publish DATA (or stdin with -) to TOPIC and print the event id",
        detail: "With --retain the event becomes the topic's state: subscribers asking with state=1 get it first; \
                 an empty DATA clears the state.",
        actions: &[],
        client: true,
        flags: &[
            flag("event", Some('e'), Some(Value::Word("TYPE")), "the event type (default message)"),
            switch("json", Some('j'), "DATA is JSON (sent as application/json)"),
            switch("retain", Some('r'), "keep the event as the topic's state"),
        ],
    },
    Command {
        name: "tail",
        args: "TOPIC...",
        about: "print the events of topics (patterns like builds/* or builds/**) as they arrive",
        detail: "Reconnects and resumes where it left off. The filters are the server's (see the README's Filters).",
        actions: &[],
        client: true,
        flags: &[
            flag("since", Some('s'), Some(Value::Word("ID")), "start after this event id (replays what came after it)"),
            switch("json", Some('j'), "print each event as a JSON line"),
            switch("state", None, "print the topics' retained states first"),
            flag("type", None, Some(Value::Word("TYPES")), "only these event types (comma-separated)"),
            many("where", Some('w'), Value::Word("PATH:VALUE"), "only JSON events with this value at this path"),
            flag("q", Some('q'), Some(Value::Word("TEXT")), "only events whose data contains TEXT, ignoring case"),
        ],
    },
    Command {
        name: "runs",
        args: "[list | show ID | follow ID | retry ID | cancel ID]",
        about: "list deploy runs, show one with its output, follow one to its end, retry or cancel one",
        detail: "`follow` prints the output as it comes and exits with the run's own exit code (1 when it was killed \
                 or timed out). Needs a token with the admin scope, or a loopback client the daemon lets see $runs.",
        actions: &["list", "show", "follow", "retry", "cancel"],
        client: true,
        flags: &[JSON],
    },
    Command {
        name: "deliveries",
        args: "[list | show ID | replay ID]",
        about: "list recent webhook deliveries, show one, or replay one (its run starts again)",
        detail: "ID is the delivery id, or HOOK/ID when two hooks stored the same id. Needs a token with the admin scope.",
        actions: &["list", "show", "replay"],
        client: true,
        flags: &[
            switch("json", Some('j'), "print JSON instead of text"),
            flag("hook", None, Some(Value::Word("HOOK")), "(list) only this hook's deliveries"),
        ],
    },
    Command {
        name: "token",
        args: "new | hash [TOKEN] | jwt …",
        about: "make tokens: `new` a random one and its sha256, `hash` the sha256 of one, `jwt` a signed test JWT",
        detail: "jwt: V of --claim is JSON when it parses as JSON, else a string; --subscribe/--publish fill the \
                 `hookcast` claim; --ttl in s, m, h or d. The secret never comes from the command line.",
        actions: &["new", "hash", "jwt"],
        client: false,
        flags: &[
            flag("secret-env", None, Some(Value::Word("NAME")), "(jwt) read the HMAC secret from this variable"),
            flag("secret-file", None, Some(Value::File), "(jwt) read the HMAC secret from this file"),
            flag("alg", None, Some(Value::OneOf("ALG", &["HS256", "HS384", "HS512"])), "(jwt) algorithm (default HS256)"),
            flag("sub", None, Some(Value::Word("SUB")), "(jwt) the sub claim"),
            many("claim", None, Value::Word("K=V"), "(jwt) another claim"),
            flag("ttl", None, Some(Value::Word("TTL")), "(jwt) lifetime, like 90s, 15m, 2h, 1d (default 15m)"),
            flag("aud", None, Some(Value::Word("AUD")), "(jwt) the aud claim"),
            flag("iss", None, Some(Value::Word("ISS")), "(jwt) the iss claim"),
            flag("kid", None, Some(Value::Word("KID")), "(jwt) the kid header"),
            many("subscribe", None, Value::Word("PATTERN"), "(jwt) a topic pattern the token may subscribe to"),
            many("publish", None, Value::Word("PATTERN"), "(jwt) a topic pattern the token may publish to"),
        ],
    },
    Command {
        name: "sign",
        args: "[FILE|-]",
        about: "print the headers a provider would send with this body (FILE or stdin)",
        detail: "",
        actions: &[],
        client: false,
        flags: SIGN_FLAGS,
    },
    Command {
        name: "send",
        args: "URL FILE|-",
        about: "POST FILE to a hook URL (http:// or https://) signed as a provider would, and print the answer",
        detail: "Exits 1 when the hook answers anything but 2xx.",
        actions: &[],
        client: false,
        flags: SIGN_FLAGS,
    },
    Command {
        name: "completions",
        args: "bash|zsh|fish",
        about: "print the shell completion script for bash, zsh or fish",
        detail: "bash: /usr/share/bash-completion/completions/hookcast; zsh: a directory in $fpath, as _hookcast; \
                 fish: ~/.config/fish/completions/hookcast.fish. scripts/install.sh and the package install them.",
        actions: &["bash", "zsh", "fish"],
        client: false,
        flags: &[],
    },
    Command {
        name: "man",
        args: "",
        about: "print the hookcast(1) man page (roff): hookcast man | man -l -",
        detail: "",
        actions: &[],
        client: false,
        flags: &[],
    },
];

/// Environment variables the commands read: name and meaning.
pub const ENVIRONMENT: &[(&str, &str)] = &[
    ("HOOKCAST_URL", "the daemon the client commands talk to (--url)"),
    ("HOOKCAST_TOKEN", "the client commands' bearer token (--token)"),
    ("HOOKCAST_TOKEN_FILE", "a file holding that token (--token-file)"),
    ("HOOKCAST_SECRET", "the secret sign and send sign with (--secret)"),
    ("HOOKCAST_LOG", "the daemon's log level, over the config's log_level (error, warn, info, debug, trace)"),
];

/// The command named `name`.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// Every flag `cmd` takes (its own, then the client flags if it talks to a daemon), and
/// `--help`, which all take.
pub fn flags(cmd: &Command) -> impl Iterator<Item = &Flag> {
    const HELP: &[Flag] = &[switch("help", Some('h'), "print this help")];
    let client: &[Flag] = if cmd.client { CLIENT_FLAGS } else { &[] };
    cmd.flags.iter().chain(client).chain(HELP)
}

/// `--long` or `-s, --long`, with the value's name.
fn flag_label(f: &Flag) -> String {
    let mut s = match f.short {
        Some(c) => format!("-{c}, --{}", f.long),
        None => format!("    --{}", f.long),
    };
    if let Some(v) = f.value {
        s.push(' ');
        s.push_str(v.name());
    }
    if f.many {
        s.push_str("...");
    }
    s
}

/// The one-line synopsis of `cmd`.
pub fn synopsis(cmd: &Command) -> String {
    let mut s = format!("hookcast {}", cmd.name);
    if !cmd.flags.is_empty() || cmd.client {
        s.push_str(" [OPTIONS]");
    }
    if !cmd.args.is_empty() {
        s.push(' ');
        s.push_str(cmd.args);
    }
    s
}

/// Wraps `text` at 96 columns, each line indented by `indent`.
fn wrap(text: &str, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > 96 {
            out.push_str(&format!("{:indent$}{line}\n", ""));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&format!("{:indent$}{line}\n", ""));
    }
    out
}

/// `hookcast CMD --help`.
pub fn help(cmd: &Command) -> String {
    let mut s = format!("{}\n\nUSAGE:\n    {}\n\n", cmd.about, synopsis(cmd));
    if !cmd.detail.is_empty() {
        s.push_str(&wrap(cmd.detail, 0));
        s.push('\n');
    }
    s.push_str("OPTIONS:\n");
    let labels: Vec<(String, &Flag)> = flags(cmd).map(|f| (flag_label(f), f)).collect();
    let width = labels.iter().map(|(l, _)| l.len()).max().unwrap_or(0).min(30);
    for (label, f) in &labels {
        let mut help = f.help.to_string();
        if let Some(Value::OneOf(_, words)) = f.value {
            help.push_str(&format!(" ({})", words.join(", ")));
        }
        if label.len() > width {
            s.push_str(&format!("    {label}\n"));
            s.push_str(&wrap(&help, 4 + width + 2));
        } else {
            let wrapped = wrap(&help, 4 + width + 2);
            s.push_str(&format!("    {label:width$}  {}", wrapped.trim_start()));
        }
    }
    s
}

/// `hookcast --help`.
pub fn overview() -> String {
    let mut s = String::from(
        "hookcast — verified webhooks in, live events out (SSE, WebSocket, long poll)\n\nUSAGE:\n    hookcast COMMAND [OPTIONS] [ARGS]\n\nCOMMANDS:\n",
    );
    for c in COMMANDS {
        s.push_str(&format!("    {:<12}", c.name));
        s.push_str(wrap(c.about, 16).trim_start());
    }
    s.push_str(
        "\n`hookcast COMMAND --help` (or `hookcast help COMMAND`) shows a command's options.\n\
         -h, --help     this text\n-V, --version  the version\n\nENVIRONMENT:\n",
    );
    for (name, what) in ENVIRONMENT {
        s.push_str(&format!("    {name:<20}{what}\n"));
    }
    s.push_str("\nExit status: 0 ok, 1 the command failed, 2 the command line was wrong.\n");
    s
}

/// Escapes text for roff: backslashes, and a leading dot or quote.
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// The man page hookcast(1), in roff.
pub fn man() -> String {
    let mut s = format!(
        ".TH HOOKCAST 1 \"\" \"hookcast {}\" \"User Commands\"\n.SH NAME\nhookcast \\- verified webhooks in, live events out \
         (SSE, WebSocket, long poll)\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION")
    );
    for c in COMMANDS {
        s.push_str(&format!(".B {}\n.br\n", roff(&synopsis(c))));
    }
    s.push_str(
        ".SH DESCRIPTION\nhookcast is a self\\-hosted push daemon on one event loop: it verifies webhooks from \
         GitHub, GitLab, Gitea/Forgejo, Stripe, Slack or any Standard\\-Webhooks sender, optionally starts a \
         configured deploy command, and pushes every accepted event to dashboards over Server\\-Sent Events, \
         WebSocket or long polling. The other commands are its clients and tools.\n.SH COMMANDS\n",
    );
    for c in COMMANDS {
        s.push_str(&format!(".SS {}\n{}\n", roff(&synopsis(c)), roff(c.about)));
        if !c.detail.is_empty() {
            s.push_str(&format!(".PP\n{}\n", roff(c.detail)));
        }
        for f in flags(c).filter(|f| f.long != "help") {
            s.push_str(&format!(".TP\n.B {}\n{}", roff(flag_label(f).trim_start()), roff(f.help)));
            if let Some(Value::OneOf(_, words)) = f.value {
                s.push_str(&format!(" ({})", roff(&words.join(", "))));
            }
            s.push('\n');
        }
    }
    s.push_str(".SH ENVIRONMENT\n");
    for (name, what) in ENVIRONMENT {
        s.push_str(&format!(".TP\n.B {name}\n{}\n", roff(what)));
    }
    s.push_str(
        ".SH FILES\n.TP\n.I /etc/hookcast/hookcast.json\nthe configuration the packaged service starts with\n\
         .TP\n.I /var/lib/hookcast\nits state directory (the journal)\n\
         .SH EXIT STATUS\n0 ok, 1 the command failed, 2 the command line was wrong.\n\
         .SH SEE ALSO\nThe README of the source repository: the configuration reference, the HTTP API and the operations guide.\n",
    );
    s
}

/// The words a flag's value may be, or the shell's file or directory completion.
fn value_words(v: Value) -> Option<&'static [&'static str]> {
    match v {
        Value::OneOf(_, w) => Some(w),
        _ => None,
    }
}

/// The bash completion script.
pub fn bash() -> String {
    let mut s = String::from(
        "# bash completion for hookcast (made by `hookcast completions bash`)\n_hookcast() {\n    local cur prev cmd\n    \
         cur=${COMP_WORDS[COMP_CWORD]}\n    prev=${COMP_WORDS[COMP_CWORD-1]}\n    cmd=${COMP_WORDS[1]}\n    \
         if ((COMP_CWORD == 1)); then\n",
    );
    let names: Vec<&str> = COMMANDS.iter().map(|c| c.name).chain(["help"]).collect();
    s.push_str(&format!(
        "        mapfile -t COMPREPLY < <(compgen -W '{}' -- \"$cur\")\n        return\n    fi\n",
        names.join(" ")
    ));
    s.push_str("    case $cmd in\n");
    for c in COMMANDS {
        s.push_str(&format!("    {})\n        case $prev in\n", c.name));
        for f in flags(c) {
            let Some(v) = f.value else { continue };
            let mut pats = vec![format!("--{}", f.long)];
            if let Some(ch) = f.short {
                pats.push(format!("-{ch}"));
            }
            let action = match (v, value_words(v)) {
                (_, Some(words)) => format!("mapfile -t COMPREPLY < <(compgen -W '{}' -- \"$cur\")", words.join(" ")),
                (Value::File, _) => "mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")".to_string(),
                (Value::Dir, _) => "mapfile -t COMPREPLY < <(compgen -d -- \"$cur\")".to_string(),
                _ => "COMPREPLY=()".to_string(),
            };
            s.push_str(&format!("        {}) {action}; return ;;\n", pats.join("|")));
        }
        s.push_str("        esac\n");
        let opts: Vec<String> = flags(c).map(|f| format!("--{}", f.long)).collect();
        s.push_str(&format!(
            "        if [[ $cur == -* ]]; then\n            mapfile -t COMPREPLY < <(compgen -W '{}' -- \"$cur\")\n",
            opts.join(" ")
        ));
        if c.actions.is_empty() {
            s.push_str(
                "        else\n            mapfile -t COMPREPLY < <(compgen -f -- \"$cur\")\n        fi\n        ;;\n",
            );
        } else {
            s.push_str(&format!(
                "        elif ((COMP_CWORD == 2)); then\n            mapfile -t COMPREPLY < <(compgen -W '{}' -- \"$cur\")\n        fi\n        ;;\n",
                c.actions.join(" ")
            ));
        }
    }
    s.push_str(&format!(
        "    help)\n        mapfile -t COMPREPLY < <(compgen -W '{}' -- \"$cur\")\n        ;;\n    esac\n}}\ncomplete -F _hookcast hookcast\n",
        COMMANDS.iter().map(|c| c.name).collect::<Vec<_>>().join(" ")
    ));
    s
}

/// Escapes text for a single-quoted zsh or fish string.
fn quoted(text: &str) -> String {
    text.replace('\'', "'\\''")
}

/// The zsh completion script (`_hookcast`).
pub fn zsh() -> String {
    let mut s = String::from("#compdef hookcast\n# zsh completion for hookcast (made by `hookcast completions zsh`)\n\n_hookcast() {\n    local -a commands\n    commands=(\n");
    for c in COMMANDS {
        s.push_str(&format!("        '{}:{}'\n", c.name, quoted(&c.about.replace(':', "\\:"))));
    }
    s.push_str("    )\n    if (( CURRENT == 2 )); then\n        _describe -t commands 'hookcast command' commands\n        return\n    fi\n    local cmd=${words[2]}\n    shift words\n    (( CURRENT-- ))\n    case $cmd in\n");
    for c in COMMANDS {
        s.push_str(&format!("    {})\n        _arguments -s \\\n", c.name));
        for f in flags(c) {
            let help = quoted(&f.help.replace('[', "\\[").replace(']', "\\]").replace(':', "\\:"));
            let action = match f.value {
                None => String::new(),
                Some(Value::File) => ":file:_files".to_string(),
                Some(Value::Dir) => ":directory:_files -/".to_string(),
                Some(Value::OneOf(name, words)) => format!(":{name}:({})", words.join(" ")),
                Some(Value::Word(name)) => format!(":{name}: "),
            };
            let star = if f.many { "*" } else { "" };
            match f.short {
                Some(ch) if !f.many => s.push_str(&format!(
                    "            '(-{ch} --{l})'{{-{ch},--{l}}}'[{help}]{action}' \\\n",
                    l = f.long
                )),
                Some(ch) => s.push_str(&format!("            '*'{{-{ch},--{l}}}'[{help}]{action}' \\\n", l = f.long)),
                None => s.push_str(&format!("            '{star}--{}[{help}]{action}' \\\n", f.long)),
            }
        }
        if c.actions.is_empty() {
            s.push_str("            '*:argument:_files'\n        ;;\n");
        } else {
            s.push_str(&format!(
                "            '1:action:({})' \\\n            '*:argument: '\n        ;;\n",
                c.actions.join(" ")
            ));
        }
    }
    s.push_str("    esac\n}\n\n_hookcast \"$@\"\n");
    s
}

/// The fish completion script.
pub fn fish() -> String {
    let mut s =
        String::from("# fish completion for hookcast (made by `hookcast completions fish`)\ncomplete -c hookcast -f\n");
    for c in COMMANDS {
        s.push_str(&format!(
            "complete -c hookcast -n '__fish_use_subcommand' -a {} -d '{}'\n",
            c.name,
            quoted(c.about)
        ));
    }
    for c in COMMANDS {
        let when = format!("__fish_seen_subcommand_from {}", c.name);
        if !c.actions.is_empty() {
            s.push_str(&format!("complete -c hookcast -n '{when}' -a '{}'\n", c.actions.join(" ")));
        }
        for f in flags(c) {
            let mut line = format!("complete -c hookcast -n '{when}' -l {}", f.long);
            if let Some(ch) = f.short {
                line.push_str(&format!(" -s {ch}"));
            }
            match f.value {
                None => {}
                Some(Value::File) | Some(Value::Dir) => line.push_str(" -r -F"),
                Some(Value::OneOf(_, words)) => line.push_str(&format!(" -x -a '{}'", words.join(" "))),
                Some(Value::Word(_)) => line.push_str(" -x"),
            }
            line.push_str(&format!(" -d '{}'\n", quoted(f.help)));
            s.push_str(&line);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_short_flags_are_unique_per_command() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        for c in COMMANDS {
            let all: Vec<&Flag> = flags(c).collect();
            for (i, f) in all.iter().enumerate() {
                for g in &all[i + 1..] {
                    assert_ne!(f.long, g.long, "{}: --{} twice", c.name, f.long);
                    assert!(f.short.is_none() || f.short != g.short, "{}: -{:?} twice", c.name, f.short);
                }
            }
        }
    }

    #[test]
    fn every_command_has_help_with_its_flags() {
        for c in COMMANDS {
            let h = help(c);
            assert!(h.contains(&synopsis(c)), "{h}");
            for f in flags(c) {
                assert!(h.contains(&format!("--{}", f.long)), "{}: --{} not in its help", c.name, f.long);
            }
        }
        assert!(help(find("publish").unwrap()).contains("-r, --retain"));
    }

    #[test]
    fn roff_escapes_what_would_be_requests() {
        assert_eq!(roff(".x"), "\\&.x");
        assert_eq!(roff("a-b\\c"), "a\\-b\\ec");
    }
}
