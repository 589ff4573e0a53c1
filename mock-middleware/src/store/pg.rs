//! The PostgreSQL backend: tokio-postgres behind a deadpool pool, on a small runtime of its
//! own, exposed through the blocking [`Backend`] seam.
//!
//! Why blocking: the rest of the service already calls the store on tokio's blocking pool
//! (SQLite needs that), so the PostgreSQL store fits the same seam instead of a second,
//! async, one; each call waits on a blocking-pool thread (there are up to 512) while the
//! driver's connections run on this backend's own two-thread runtime, so a slow or restarting
//! database ties up blocking threads, never the executor that serves HTTP. The cost is one
//! thread hand-off per call, small next to the database round trip (the benchmark measures
//! both). Owning the runtime also lets tools and tests without one (`migrate`, `load seed`,
//! plain `#[test]`s) use the store unchanged. Calling it from an async task panics, as
//! blocking there would be a bug.
//!
//! Failures: a query that does not finish within 10 s, a lost connection, or a pool that
//! cannot connect within 5 s is a [`StoreError::Db`]; deadpool drops broken connections and
//! opens fresh ones on the next call, so the store recovers by itself after a restart.

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{IsNull, ToSql, Type};

use super::sql::{Backend, Conn, Row, SqlStore, Val};
use super::{now_ms, schema, StoreError};

/// Bound of one statement (or transaction step).
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of getting a connection from the pool (including connecting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Advisory lock keys: migrations, id assignment.
const MIGRATE_LOCK: i64 = 0x6d6d_0001;

pub type PgStore = SqlStore<PgBackend>;

/// The pool and the runtime its connections live on.
pub struct PgBackend {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    name: String,
}

impl Drop for PgBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn db(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match (self, ty) {
            (Val::Null, _) => Ok(IsNull::Yes),
            (v, &Type::INT2) => (v.i64() as i16).to_sql(ty, out),
            (v, &Type::INT4) => v.i32().to_sql(ty, out),
            (v, &Type::INT8) => v.i64().to_sql(ty, out),
            (v, &Type::BOOL) => (v.i64() != 0).to_sql(ty, out),
            (v, _) => v.text().as_str().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

fn to_row(r: &tokio_postgres::Row) -> Row {
    (0..r.len())
        .map(|i| {
            let ty = r.columns()[i].type_();
            let v = match *ty {
                Type::INT2 => r
                    .try_get::<_, Option<i16>>(i)
                    .map(|v| v.map(|x| Val::I32(x as i32))),
                Type::INT4 => r.try_get::<_, Option<i32>>(i).map(|v| v.map(Val::I32)),
                Type::INT8 => r.try_get::<_, Option<i64>>(i).map(|v| v.map(Val::I64)),
                Type::BOOL => r
                    .try_get::<_, Option<bool>>(i)
                    .map(|v| v.map(|b| Val::I32(b as i32))),
                _ => r.try_get::<_, Option<String>>(i).map(|v| v.map(Val::Text)),
            };
            v.ok().flatten().unwrap_or(Val::Null)
        })
        .collect()
}

struct PgConn<'a> {
    client: &'a Object,
    b: &'a PgBackend,
}

impl Conn for PgConn<'_> {
    fn exec(&mut self, sql: &str, p: &[Val]) -> Result<u64, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = p.iter().map(|v| v as _).collect();
        self.b.run(async {
            let st = self.client.prepare_cached(sql).await.map_err(db)?;
            self.client.execute(&st, &params).await.map_err(db)
        })
    }

    fn query(&mut self, sql: &str, p: &[Val]) -> Result<Vec<Row>, StoreError> {
        let params: Vec<&(dyn ToSql + Sync)> = p.iter().map(|v| v as _).collect();
        self.b.run(async {
            let st = self.client.prepare_cached(sql).await.map_err(db)?;
            let rows = self.client.query(&st, &params).await.map_err(db)?;
            Ok(rows.iter().map(to_row).collect())
        })
    }
}

impl PgBackend {
    fn rt(&self) -> &tokio::runtime::Runtime {
        self.rt
            .as_ref()
            .expect("runtime lives as long as the backend")
    }

    /// Runs a future of the driver on this backend's runtime, bounded by [`QUERY_TIMEOUT`].
    fn run<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        self.rt().block_on(async {
            tokio::time::timeout(QUERY_TIMEOUT, f).await.map_err(|_| {
                StoreError::Db(format!("no answer within {} s", QUERY_TIMEOUT.as_secs()))
            })?
        })
    }

    fn client(&self) -> Result<Object, StoreError> {
        self.run(async {
            self.pool
                .get()
                .await
                .map_err(|e| db(format!("{} ({e})", self.name)))
        })
    }
}

impl Backend for PgBackend {
    fn tx<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let client = self.client()?;
        self.run(async { client.batch_execute("BEGIN").await.map_err(db) })?;
        match f(&mut PgConn {
            client: &client,
            b: self,
        }) {
            Ok(r) => {
                self.run(async { client.batch_execute("COMMIT").await.map_err(db) })?;
                Ok(r)
            }
            Err(e) => {
                let _ = self.run(async { client.batch_execute("ROLLBACK").await.map_err(db) });
                Err(e)
            }
        }
    }

    fn auto<R>(
        &self,
        f: impl FnOnce(&mut dyn Conn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let client = self.client()?;
        f(&mut PgConn {
            client: &client,
            b: self,
        })
    }

    fn id_lock(&self) -> Option<&'static str> {
        Some("SELECT pg_advisory_xact_lock(1835925506)")
    }

    fn shared(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        self.name.clone()
    }

    fn version(&self) -> Result<i64, StoreError> {
        self.auto(|c| {
            Ok(c.query("SELECT COALESCE(MAX(version), 0) FROM mm_schema", &[])?[0][0].i64())
        })
    }
}

/// `postgres HOST:PORT/DB` without user or password.
fn describe(cfg: &tokio_postgres::Config) -> String {
    let host = cfg
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!("postgres {host}:{port}/{}", cfg.get_dbname().unwrap_or(""))
}

impl SqlStore<PgBackend> {
    /// Connects (a pool of up to `pool_size` connections) and applies pending migrations.
    pub fn open(url: &str, pool_size: usize) -> Result<PgStore, StoreError> {
        let mut cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Db(format!("mock.db is not a PostgreSQL URL: {e}")))?;
        cfg.connect_timeout(CONNECT_TIMEOUT);
        cfg.application_name("mock-middleware");
        let name = describe(&cfg);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mm-postgres")
            .enable_all()
            .build()
            .map_err(db)?;
        let mgr = Manager::from_config(
            cfg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(db)?;
        let store = SqlStore {
            b: PgBackend {
                rt: Some(rt),
                pool,
                name,
            },
        };
        store.migrate()?;
        Ok(store)
    }

    /// Applies pending migrations under an advisory lock; returns the schema version.
    pub fn migrate(&self) -> Result<i64, StoreError> {
        let known = schema::POSTGRES.len() as i64;
        let client = self.b.client()?;
        self.b.run(async {
            client.batch_execute("BEGIN").await.map_err(db)?;
            let r = async {
                client
                    .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
                    .await
                    .map_err(db)?;
                client
                    .batch_execute("CREATE TABLE IF NOT EXISTS mm_schema (version INT4 PRIMARY KEY, applied_ms INT8 NOT NULL)")
                    .await
                    .map_err(db)?;
                let v: i32 = client
                    .query_one("SELECT COALESCE(MAX(version), 0) FROM mm_schema", &[])
                    .await
                    .map_err(db)?
                    .get(0);
                if v as i64 > known {
                    return Err(StoreError::TooNew { found: v as i64, known });
                }
                for (i, sql) in schema::POSTGRES.iter().enumerate().skip(v as usize) {
                    client.batch_execute(sql).await.map_err(db)?;
                    let next = (i + 1) as i32;
                    client
                        .execute("INSERT INTO mm_schema (version, applied_ms) VALUES ($1, $2)", &[&next, &now_ms()])
                        .await
                        .map_err(db)?;
                    tracing::info!(version = next, "PostgreSQL schema migrated");
                }
                Ok(known)
            }
            .await;
            let end = if r.is_ok() { "COMMIT" } else { "ROLLBACK" };
            client.batch_execute(end).await.map_err(db)?;
            r
        })
    }
}
