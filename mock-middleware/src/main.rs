//! Command line of mock-middleware.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

// glibc malloc serialises the many small allocations of request handling on its arena locks;
// mimalloc keeps them thread-local.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "mock-middleware",
    version,
    about = "OX-faithful push receiver with fake APNs/FCM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the middleware: http-notify receiver, client API and admin listener.
    Serve {
        /// Directory with *.properties, users.yml and mailapp-config.yml.
        #[arg(long)]
        config_dir: PathBuf,
    },
    /// Run fake APNs and FCM/GCM (HTTP/2 over TLS) plus their admin listener, configured from
    /// the same directory (`mock.fake.*` keys, the APNs key and the service account).
    FakeProviders {
        #[arg(long)]
        config_dir: PathBuf,
    },
    /// Apply the database migrations of `mock.db` (SQLite file or PostgreSQL) and print the
    /// schema version; `serve` does the same at start-up.
    Migrate {
        #[arg(long)]
        config_dir: PathBuf,
    },
    /// Write a complete working demo configuration directory.
    InitDemo {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 8009)]
        http_port: u16,
        #[arg(long, default_value_t = 8010)]
        admin_port: u16,
        #[arg(long, default_value_t = 8443)]
        apns_port: u16,
        #[arg(long, default_value_t = 8444)]
        fcm_port: u16,
        #[arg(long, default_value_t = 8445)]
        fake_admin_port: u16,
        /// Password Dovecot uses for http-notify (Basic auth, login `dovecot`); random if absent.
        #[arg(long)]
        rest_password: Option<String>,
        /// Password of the demo user `demo`; random if absent.
        #[arg(long)]
        user_password: Option<String>,
    },
    /// Load generator for the benchmark: PUT notifications from this process.
    Load(mock_middleware::tools::loadgen::LoadArgs),
    /// Running permanent listeners, as OX's listpushusers: `user=U, context=C, permanent=true`.
    Listpushusers {
        #[arg(long)]
        config_dir: PathBuf,
    },
    /// Push registrations: `-l` lists them, `-r -c CID -u UID -i CLIENT` removes one.
    Pushusers {
        #[arg(long)]
        config_dir: PathBuf,
        #[arg(short = 'l', long = "list", conflicts_with = "remove")]
        list: bool,
        #[arg(short = 'r', long = "remove", requires_all = ["context", "user", "client"])]
        remove: bool,
        #[arg(short = 'c', long = "context")]
        context: Option<i32>,
        #[arg(short = 'u', long = "user")]
        user: Option<i32>,
        #[arg(short = 'i', long = "client")]
        client: Option<String>,
    },
    /// A command-line stand-in for the OX Mail app: discovers the API, logs in, subscribes a
    /// token and shows the pushes the fake provider receives for it.
    Device(mock_middleware::tools::device::DeviceArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().cmd {
        Cmd::Serve { config_dir } => {
            let settings = match mock_middleware::config::Settings::load(&config_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mock-middleware: {e}");
                    std::process::exit(2);
                }
            };
            let running = match mock_middleware::server::start(settings).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mock-middleware: {e}");
                    std::process::exit(1);
                }
            };
            shutdown_signal().await;
            running.shutdown().await;
        }
        Cmd::FakeProviders { config_dir } => {
            let f = mock_middleware::tools::demo::fake_setup(&config_dir)
                .context("reading the fake providers' configuration")?;
            let tls = mock_middleware::tls::server_config(
                &f.cert_pem,
                &f.key_pem,
                f.client_ca_pem.as_deref(),
            )?;
            let running = mock_middleware::fake::start(f.cfg, tls, f.apns, f.fcm, f.admin)
                .await
                .context("binding the fake providers")?;
            tracing::info!(apns = %running.apns_addr, fcm = %running.fcm_addr, admin = %running.admin_addr, "fake providers listening");
            shutdown_signal().await;
            running.shutdown().await;
        }
        Cmd::InitDemo {
            dir,
            http_port,
            admin_port,
            apns_port,
            fcm_port,
            fake_admin_port,
            rest_password,
            user_password,
        } => {
            let ports = mock_middleware::tools::demo::DemoPorts {
                http: http_port,
                admin: admin_port,
                apns: apns_port,
                fcm: fcm_port,
                fake_admin: fake_admin_port,
            };
            let secrets = mock_middleware::tools::demo::DemoSecrets {
                rest_password,
                user_password,
            };
            for line in mock_middleware::tools::demo::init_demo(&dir, ports, secrets)? {
                println!("{line}");
            }
        }
        Cmd::Migrate { config_dir } => {
            let settings = match mock_middleware::config::Settings::load(&config_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mock-middleware: {e}");
                    std::process::exit(2);
                }
            };
            let line = tokio::task::spawn_blocking(move || {
                let st = mock_middleware::store::open(&settings.db, 1)?;
                Ok::<_, mock_middleware::store::StoreError>(format!(
                    "{}: schema version {}",
                    st.describe(),
                    st.schema_version()?
                ))
            })
            .await?;
            println!("{}", or_exit(line.map_err(anyhow::Error::from)));
        }
        Cmd::Load(args) => mock_middleware::tools::loadgen::run(args).await?,
        Cmd::Listpushusers { config_dir } => {
            for l in or_exit(mock_middleware::tools::pushusers::listpushusers(&config_dir).await) {
                println!("{l}");
            }
        }
        Cmd::Pushusers {
            config_dir,
            list,
            remove,
            context,
            user,
            client,
        } => {
            if remove {
                let (c, u, i) = (
                    context.unwrap_or(0),
                    user.unwrap_or(0),
                    client.unwrap_or_default(),
                );
                println!(
                    "{}",
                    or_exit(
                        mock_middleware::tools::pushusers::pushusers_remove(&config_dir, c, u, &i)
                            .await
                    )
                );
            } else if list {
                for l in
                    or_exit(mock_middleware::tools::pushusers::pushusers_list(&config_dir).await)
                {
                    println!("{l}");
                }
            } else {
                let lines =
                    or_exit(mock_middleware::tools::pushusers::listpushusers(&config_dir).await);
                if lines.is_empty() {
                    println!("No running push users on this node.");
                }
                for l in lines {
                    println!("{l}");
                }
            }
        }
        Cmd::Device(args) => or_exit(mock_middleware::tools::device::run(args).await),
    }
    Ok(())
}

/// Prints the error as one line and exits with status 1.
fn or_exit<T>(r: anyhow::Result<T>) -> T {
    r.unwrap_or_else(|e| {
        eprintln!("mock-middleware: {e:#}");
        std::process::exit(1)
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
