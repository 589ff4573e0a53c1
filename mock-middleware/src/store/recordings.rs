//! The cluster's recordings in the portable SQL of [`super::sql`]: appended in batches by
//! every node ([`crate::recording_shared`]), trimmed by count and bytes, read in insertion order.

use super::sql::{p, Backend, SqlStore, Val};
use super::StoreError;

/// Rows per INSERT statement (4 parameters each).
const CHUNK: usize = 200;

impl<B: Backend> SqlStore<B> {
    pub fn append_recs(&self, node: &str, rows: &[(i32, i64, String)]) -> Result<(), StoreError> {
        self.b.tx(|c| {
            for chunk in rows.chunks(CHUNK) {
                let mut sql =
                    String::from("INSERT INTO recordings (kind, node_id, at_ms, body) VALUES ");
                let mut params = Vec::with_capacity(chunk.len() * 4);
                for (i, (kind, at, body)) in chunk.iter().enumerate() {
                    let n = i * 4;
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("(${},${},${},${})", n + 1, n + 2, n + 3, n + 4));
                    params.extend([
                        Val::I32(*kind),
                        Val::Text(node.to_string()),
                        Val::I64(*at),
                        Val::Text(body.clone()),
                    ]);
                }
                c.exec(&sql, &params)?;
            }
            Ok(())
        })
    }

    pub fn recs(&self, kind: i32) -> Result<Vec<(String, String)>, StoreError> {
        self.b.auto(|c| {
            Ok(c.query(
                "SELECT node_id, body FROM recordings WHERE kind=$1 ORDER BY seq",
                p![kind],
            )?
            .iter()
            .map(|r| (r[0].text(), r[1].text()))
            .collect())
        })
    }

    pub fn trim_recs(&self, kind: i32, max: i64, max_bytes: i64) -> Result<u64, StoreError> {
        self.b.auto(|c| {
            c.exec(
                "DELETE FROM recordings WHERE kind=$1 AND seq IN (SELECT seq FROM (
                   SELECT seq, ROW_NUMBER() OVER (ORDER BY seq DESC) AS n,
                          SUM(LENGTH(body)) OVER (ORDER BY seq DESC) AS b
                   FROM recordings WHERE kind=$1) t WHERE t.n > $2 OR (t.n > 1 AND t.b > $3))",
                p![kind, max, max_bytes],
            )
        })
    }

    pub fn clear_recs(&self) -> Result<(), StoreError> {
        self.b
            .auto(|c| c.exec("DELETE FROM recordings", &[]).map(|_| ()))
    }
}
