//! Names certified for S3 gateways, bound to the account that first had a gateway
//! certified under them. Clients of a gateway trust the grid CA, which would sign any name
//! for any account: without the binding, any account (or host operator) could have the CA
//! certify another account's gateway name and pose as that gateway to its S3 clients.

use scatter_core::UserId;

use super::{Store, StoreError};

impl Store {
    /// Binds `names` to `account`'s gateways, in one transaction: each not bound yet is bound
    /// to it. When another account holds one, binds nothing and returns that name and account.
    pub fn bind_gateway_names(
        &self,
        account: UserId,
        names: &[String],
        now: u64,
    ) -> Result<Option<(String, UserId)>, StoreError> {
        self.write(|tx| {
            for name in names {
                let holder: Option<i64> =
                    tx.query_opt("SELECT account FROM gateway_names WHERE name = ?1", params![name], |r| r.get(0))?;
                match holder {
                    Some(h) if h as u64 != account.0 => return Ok(Some((name.clone(), UserId(h as u64)))),
                    Some(_) => {}
                    None => {
                        tx.execute(
                            "INSERT INTO gateway_names (name, account, since) VALUES (?1, ?2, ?3)",
                            params![name, account.0 as i64, now as i64],
                        )?;
                    }
                }
            }
            Ok(None)
        })
    }

    /// The account whose gateways `name` is bound to, if any.
    pub fn gateway_name_holder(&self, name: &str) -> Result<Option<UserId>, StoreError> {
        self.read(|conn| {
            let holder: Option<i64> =
                conn.query_opt("SELECT account FROM gateway_names WHERE name = ?1", params![name], |r| r.get(0))?;
            Ok(holder.map(|h| UserId(h as u64)))
        })
    }
}
