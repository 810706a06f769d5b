//! The conformance suite: the catalog operations no other store test covers, each run on
//! both back ends (see [`super::testing`]) against a small catalog, with the values where
//! SQLite and PostgreSQL tend to differ: the order of results, NULLs, empty results, sizes
//! past 32 bits, byte strings, text with quotes and non-ASCII, booleans, limits, and the
//! `user` columns.

use scatter_core::{ChunkId, DeviceId, HostId, PackId, ShardId, UserId};
use scatter_proto::api::{attributes_tag, ChunkEntry, Policy, Role, StoredShard};
use scatter_proto::SignedReceipt;

use super::testing::{catalog, conformance};
use super::{
    DegradedPack, NewHost, NewObject, NewPack, Reservation, ReserveError, ShardMove, ShardState, Standing, Store,
    StoreError, Terms, CHUNK_ROW_BYTES,
};

const GIB: u64 = 1 << 30;

/// A user registered with invite `[n; 32]` and device key `[255 - n; 32]`: its own id.
fn user(store: &Store, n: u8, name: &str, role: Role, quota: Option<u64>, owner: Option<UserId>) -> UserId {
    store.add_token(&[n; 32], name, role, quota, owner).expect("token");
    store.redeem_token(&[n; 32], "age1pk", &[255 - n; 32], "", 0).expect("redeem").expect("unused token").me
}

/// The account `user` and its first device's key, as a request from that device finds them.
fn login(store: &Store, user: UserId) -> (super::UserRow, Vec<u8>) {
    let first = store.devices(user).expect("devices")[0].id;
    let (row, key, _) = store.device_login(first).expect("sql").expect("a device");
    (row, key)
}

/// A host with secret hash `[n; 32]` offering 3 TiB, heard from at `now`.
fn host(store: &Store, n: u8, now: u64) -> HostId {
    store.add_host(&[n; 32], &format!("http://127.0.0.1:{n}"), "z", 3 << 40, None, now).expect("host")
}

fn pid(n: u8) -> PackId {
    PackId::from_bytes([n; 32])
}

fn cid(n: u8) -> ChunkId {
    ChunkId::from_bytes([n; 32])
}

/// Shard `idx` of pack `pack` (bytes from 0x00 to 0xff).
fn sid(pack: u8, idx: u8) -> ShardId {
    let mut b = [0xff; 32];
    b[0] = pack;
    b[1] = idx;
    b[2] = 0;
    ShardId::from_bytes(b)
}

/// A pack to commit: shard `i` on `hosts[i]`, the first `k` of them data shards.
struct Pack<'a> {
    n: u8,
    k: u8,
    hosts: &'a [HostId],
    shard_size: u64,
    chunks: &'a [u8],
}

impl<'a> Pack<'a> {
    fn new(n: u8, k: u8, hosts: &'a [HostId]) -> Self {
        Self { n, k, hosts, shard_size: 64, chunks: &[] }
    }

    fn shard_size(self, shard_size: u64) -> Self {
        Self { shard_size, ..self }
    }

    fn chunks(self, chunks: &'a [u8]) -> Self {
        Self { chunks, ..self }
    }

    fn commit(&self, store: &Store, user: UserId, session: u64, now: u64) {
        self.try_commit(store, user, session, now).expect("commit pack");
    }

    fn try_commit(&self, store: &Store, user: UserId, session: u64, now: u64) -> Result<(), StoreError> {
        let shards: Vec<StoredShard> = (0..)
            .zip(self.hosts)
            .map(|(i, h)| StoredShard {
                index: i,
                shard: sid(self.n, i),
                host: *h,
                receipt: SignedReceipt(format!("r{i}")),
            })
            .collect();
        let chunks: Vec<ChunkEntry> =
            (0..).zip(self.chunks).map(|(i, c)| ChunkEntry { id: cid(*c), offset: i * 10, len: 10 }).collect();
        let m = u8::try_from(self.hosts.len()).expect("few hosts") - self.k;
        let p = NewPack {
            id: pid(self.n),
            user,
            session,
            size: self.shard_size * u64::from(self.k),
            k: self.k,
            m,
            shard_size: self.shard_size,
            shards: &shards,
            chunks: &chunks,
            relocate: false,
        };
        store.commit_pack(&p, now).map(|_| ())
    }
}

/// Releases pack `n` for deletion the way the store does (its owner's usage with it).
fn release_pack(store: &Store, n: u8) {
    assert_eq!(store.conn().release(&pid(n), 0).expect("sql"), 1, "pack {n} was live");
}

fn set_shard_state(store: &Store, n: u8, idx: u8, state: &str) {
    store
        .conn()
        .execute(
            "UPDATE shards SET state = ?3 WHERE pack = ?1 AND idx = ?2",
            params![&pid(n).as_bytes()[..], idx, state],
        )
        .expect("sql");
}

/// A pack as (id, size, k, m, shard size, healthy, shards as (index, host, state)).
type PackView<'a> = (PackId, u64, u8, u8, u64, usize, Vec<(u8, HostId, &'a str)>);

/// A user as listed: (id, name, role, disabled, quota, owner, bytes used).
type UserView = (UserId, String, Role, bool, Option<u64>, Option<UserId>, u64);

fn view(packs: &[DegradedPack]) -> Vec<PackView<'_>> {
    packs
        .iter()
        .map(|p| {
            let shards = p.shards.iter().map(|(i, s, h, st)| {
                assert_eq!(*s, sid(p.id.as_bytes()[0], *i), "the shard ids come back intact");
                (*i, *h, st.as_str())
            });
            (p.id, p.size, p.k, p.m, p.shard_size, p.healthy, shards.collect())
        })
        .collect()
}

conformance! {
    fn a_catalog_keeps_the_first_grid_identity_it_is_given() {
        let (_guard, location) = crate::store::testing::location();
        let ours = [("signing", "ed25519:0a'b\"c ?1".to_owned()), ("ca", "sha256:é€ ünïcødé".to_owned())];
        {
            let store = Store::connect(&location).expect("open");
            assert_eq!(store.claim_grid(&ours).expect("claim"), None, "the first start records it");
            assert_eq!(store.claim_grid(&ours).expect("claim"), None, "the same keys again");
            assert_eq!(store.claim_grid(&[]).expect("claim"), None);
        }
        let store = Store::connect(&location).expect("reopen");
        assert_eq!(store.claim_grid(&ours).expect("claim"), None, "kept across restarts");
        let other_ca = [("signing", ours[0].1.clone()), ("ca", "sha256:other".to_owned())];
        assert_eq!(store.claim_grid(&other_ca).expect("claim"), Some(("ca".to_owned(), ours[1].1.clone())));
        let both = [("signing", "x".to_owned()), ("ca", "y".to_owned())];
        assert_eq!(
            store.claim_grid(&both).expect("claim"),
            Some(("signing".to_owned(), ours[0].1.clone())),
            "the first pair that differs"
        );
        // A pair named later is recorded then, and kept from then on.
        let more = [("signing", ours[0].1.clone()), ("extra", "1".to_owned())];
        assert_eq!(store.claim_grid(&more).expect("claim"), None);
        assert_eq!(
            store.claim_grid(&[("extra", "2".to_owned())]).expect("claim"),
            Some(("extra".to_owned(), "1".to_owned()))
        );
    }

    fn events_are_the_newest_oldest_first_with_their_text_intact() {
        use crate::store::Party::{Account, Grid, Host};
        let (_guard, store) = catalog();
        assert!(store.events(10).expect("events").is_empty());
        let detail = "name 'Ann O''Brien' \"quoted\" — ünïcødé ✓ ?1 $1 user";
        store.record_event(5_000_000_000, Grid, "u1", "user.invited", detail).expect("record");
        store.record_event(5_000_000_001, Host, "h2", "host.joined", "").expect("record");
        store.record_event(5_000_000_001, Account, "unknown", "auth.refused", "bad signature").expect("record");
        let events = |limit| -> Vec<(u64, String, String, String)> {
            let events = store.events(limit).expect("events");
            events.into_iter().map(|e| (e.time, e.actor, e.action, e.detail)).collect()
        };
        let all = events(10);
        assert_eq!(
            all,
            [
                (5_000_000_000, "u1".into(), "user.invited".into(), detail.into()),
                (5_000_000_001, "h2".into(), "host.joined".into(), String::new()),
                (5_000_000_001, "unknown".into(), "auth.refused".into(), "bad signature".into()),
            ]
        );
        assert_eq!(events(2), all[1..], "the newest two, oldest first");
        assert!(events(0).is_empty());
        // Only the newest KEEP are kept: the first made to look KEEP events older goes.
        let keep = crate::store::events::KEEP;
        store.record_event(5_000_000_002, Grid, "coordinator", "host.state", "").expect("record");
        store.conn().execute("UPDATE events SET n = n - ?1 WHERE action = 'user.invited'", params![keep]).expect("sql");
        store.record_event(5_000_000_002, Grid, "u1", "user.removed", "").expect("record");
        let actions: Vec<String> = events(10).into_iter().map(|e| e.2).collect();
        assert_eq!(actions, ["host.joined", "auth.refused", "host.state", "user.removed"]);
        // Refusals are counted apart: however many come, they push out only older refusals.
        store.record_event(5_000_000_003, Account, "u9", "auth.forbidden", "").expect("record");
        store.conn().execute("UPDATE events SET n = n - ?1 WHERE action = 'auth.refused'", params![keep]).expect("sql");
        store.record_event(5_000_000_004, Account, "u9", "lock.refused", "").expect("record");
        let actions: Vec<String> = events(10).into_iter().map(|e| e.2).collect();
        let expected = ["host.joined", "host.state", "user.removed", "auth.forbidden", "lock.refused"];
        assert_eq!(actions, expected, "the old refusal went alone");
        // So is what accounts do: a flood of it pushes out only what accounts did.
        store.record_event(5_000_000_005, Account, "u9", "dashboard.link", "").expect("record");
        store.record_event(5_000_000_006, Account, "u9", "policy.set", "").expect("record");
        store.conn().execute("UPDATE events SET n = n - ?1 WHERE action = 'dashboard.link'", params![keep]).expect("sql");
        store.record_event(5_000_000_007, Account, "u8", "gateway.certified", "").expect("record");
        let actions: Vec<String> = events(10).into_iter().map(|e| e.2).collect();
        let mut expected = expected.to_vec();
        expected.extend(["policy.set", "gateway.certified"]);
        assert_eq!(actions, expected, "the old link went alone");
        // And what hosts send: a host flooding its heartbeats with refused grants pushes
        // out only what hosts did, not the record of requests refused here.
        // (The refusals made to look KEEP reports older than the newest report.)
        store.record_event(5_000_000_008, Host, "h2", "grant.refused", "").expect("record");
        let refusals = "action IN ('auth.forbidden', 'lock.refused')";
        store.conn().execute(&format!("UPDATE events SET n = n - ?1 WHERE {refusals}"), params![keep]).expect("sql");
        store.record_event(5_000_000_009, Host, "h2", "grant.refused", "").expect("record");
        let actions: Vec<String> = events(10).into_iter().map(|e| e.2).collect();
        expected.extend(["grant.refused", "grant.refused"]);
        assert_eq!(actions, expected, "the old report went alone, no refusal with it");
        // Whatever the grid's side does is kept with the grid's changes, whoever set it off;
        // the coordinator's expiries, which tenants set off as often as they like, are not.
        store.record_event(5_000_000_010, Grid, "coordinator", "data.expired", "").expect("record");
        store.record_event(5_000_000_010, Host, "h3", "host.state", "").expect("record");
        let pool = |action: &str, actor: &str| -> i64 {
            let sql = "SELECT pool FROM events WHERE action = ?1 AND actor = ?2";
            store.conn().query_i64(sql, params![action, actor]).expect("pool")
        };
        assert_eq!(pool("host.state", "coordinator"), pool("user.removed", "u1"));
        assert_ne!(pool("data.expired", "coordinator"), pool("user.removed", "u1"));
        assert_ne!(pool("host.state", "h3"), pool("user.removed", "u1"));
    }

    fn one_account_or_host_keeps_its_newest_events_only() {
        use crate::store::Party::{Account, Grid, Host};
        let (_guard, store) = catalog();
        let per_actor = crate::store::events::PER_ACTOR as usize;
        store.record_event(1, Grid, "u1", "user.invited", "bob").expect("record");
        store.record_event(2, Account, "u2", "policy.set", "bob's").expect("record");
        store.record_event(2, Host, "h1", "host.certified", "h1's").expect("record");
        for i in 0..per_actor + 5 {
            store.record_event(3 + i as u64, Account, "u3", "delegate.trusted", &i.to_string()).expect("record");
            store.record_event(3 + i as u64, Host, "h2", "host.receipt_key_changed", &i.to_string()).expect("record");
        }
        let events = store.events(10 * per_actor).expect("events");
        let of = |actor: &str| events.iter().filter(|e| e.actor == actor).map(|e| e.detail.as_str()).collect::<Vec<_>>();
        for actor in ["u3", "h2"] {
            let kept = of(actor);
            assert_eq!(kept.len(), per_actor, "{actor} keeps its newest only");
            assert_eq!(kept.first(), Some(&"5"), "{actor}'s oldest went first");
            assert_eq!(kept.last(), Some(&(per_actor + 4).to_string().as_str()));
        }
        assert_eq!((of("u1"), of("u2"), of("h1")), (vec!["bob"], vec!["bob's"], vec!["h1's"]), "others' events stay");
    }

    fn users_are_listed_with_their_rights_quotas_and_usage() {
        let (_guard, store) = catalog();
        let name = "Ann O'Brien «ü» \"x\"";
        let ann = user(&store, 1, name, Role::User, Some(5 << 40), None);
        let bob = user(&store, 2, "bob", Role::Admin, None, None);
        let reader = user(&store, 3, "laptop", Role::Reader, None, Some(ann));
        assert!(store.user_exists(ann).expect("exists") && store.user_exists(reader).expect("exists"));
        assert!(!store.user_exists(UserId(999)).expect("exists"));

        let (row, key) = login(&store, reader);
        assert_eq!(
            (row.id, row.me, row.role, row.disabled, row.quota),
            (ann, reader, Role::Reader, false, Some(5 << 40)),
            "a delegate works on its owner's data, under the owner's quota"
        );
        assert_eq!(key, [0xfc; 32]);
        let (row, key) = login(&store, ann);
        assert_eq!((row.id, row.me, row.role, row.quota, key), (ann, ann, Role::User, Some(5 << 40), vec![0xfe; 32]));
        let (row, _) = login(&store, bob);
        assert_eq!((row.id, row.role, row.quota), (bob, Role::Admin, None));
        assert!(store.device_login(DeviceId(999)).expect("sql").is_none());

        // Usage counts all k+m shards of live packs, past 32 bits.
        let hosts: Vec<HostId> = (1..=3).map(|n| host(&store, n, 0)).collect();
        let s = store.add_session(ann, b"", 0, 100).expect("session");
        Pack::new(1, 2, &hosts).shard_size(6 * GIB).commit(&store, ann, s, 1);
        Pack::new(2, 1, &hosts[..1]).shard_size(GIB).commit(&store, ann, s, 1);
        assert_eq!(store.usage(ann).expect("usage"), 19 * GIB);
        release_pack(&store, 2);
        assert_eq!(store.usage(ann).expect("usage"), 18 * GIB, "a released pack no longer counts");
        assert_eq!(store.conn().usage_summed(ann).expect("sum"), 18 * GIB);
        assert_eq!(store.usage(bob).expect("usage"), 0);
        assert_eq!(store.usage(reader).expect("usage"), 0, "a delegate's writes count for its owner");
        assert_eq!(store.usage(UserId(999)).expect("usage"), 0);

        let users = |store: &Store| -> Vec<UserView> {
            let users = store.users().expect("users");
            users.into_iter().map(|u| (u.id, u.name, u.role, u.disabled, u.quota, u.owner, u.used)).collect()
        };
        assert_eq!(
            users(&store),
            [
                (ann, name.to_owned(), Role::User, false, Some(5 << 40), None, 18 * GIB),
                (bob, "bob".to_owned(), Role::Admin, false, None, None, 0),
                (reader, "laptop".to_owned(), Role::Reader, false, None, Some(ann), 0),
            ]
        );

        // The owner's state governs its delegates; a delegate's own does not touch the owner.
        let disabled = |id| login(&store, id).0.disabled;
        assert!(store.set_disabled(ann, true).expect("disable"));
        assert!(disabled(ann) && disabled(reader) && !disabled(bob));
        let listed: Vec<bool> = users(&store).iter().map(|u| u.3).collect();
        assert_eq!(listed, [true, false, false]);
        assert!(store.set_disabled(ann, false).expect("enable"));
        assert!(!disabled(ann) && !disabled(reader));
        assert!(store.set_disabled(reader, true).expect("disable"));
        assert!(!disabled(ann) && disabled(reader));
        assert!(!store.set_disabled(UserId(999), true).expect("no such user"));
    }

    fn an_accounts_gateways_hold_a_bounded_number_of_names_and_one_given_up_passes_on_when_its_certificates_expire() {
        use crate::store::{NameHolder, NameRefusal, GATEWAY_NAMES_PER_ACCOUNT};
        use std::collections::HashMap;
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let reader = user(&store, 2, "rea", Role::Reader, None, Some(ann));
        let bob = user(&store, 3, "bob", Role::User, None, None);
        let none = HashMap::new();
        let names = |from: usize, n: usize| (from..from + n).map(|i| format!("g{i}.example")).collect::<Vec<_>>();
        // Ann's gateways and her reader's share her bound.
        let bind = |who, owner, names: &[String], now| {
            store.bind_gateway_names(who, owner, names, &none, now, now + 100).expect("bind")
        };
        assert_eq!(bind(ann, ann, &names(0, 8), 10), Ok(true));
        assert_eq!(bind(reader, ann, &names(8, 8), 10), Ok(true));
        assert_eq!(GATEWAY_NAMES_PER_ACCOUNT, 16);
        assert_eq!(bind(ann, ann, &names(16, 1), 10), Err(NameRefusal::TooMany));
        assert_eq!(bind(reader, ann, &names(16, 1), 10), Err(NameRefusal::TooMany));
        assert_eq!(bind(ann, ann, &names(0, 8), 20), Ok(false), "held names are certified again");
        assert_eq!(bind(bob, bob, &names(16, 16), 10), Ok(true), "bob's bound is his own");
        // Each sees its own (an account its delegates' too); an admin all.
        assert_eq!(store.gateway_names(Some(ann), 20).expect("list").len(), 16);
        assert_eq!(store.gateway_names(Some(reader), 20).expect("list").len(), 8);
        assert_eq!(store.gateway_names(None, 20).expect("list").len(), 32);
        let g0 = store.gateway_names(Some(ann), 20).expect("list").remove(0);
        assert_eq!((g0.name.as_str(), g0.account, g0.since, g0.certified_until, g0.released), ("g0.example", ann, 10, 120, false));

        // Given up: not the reader's to give up of ann's, nor bob's; ann's of her reader's is.
        assert_eq!(store.release_gateway_name("g0.example", Some(reader)).expect("release"), None);
        assert_eq!(store.release_gateway_name("g0.example", Some(bob)).expect("release"), None);
        assert!(store.release_gateway_name("g8.example", Some(ann)).expect("release").is_some());
        let (g0, now) = store.release_gateway_name("g0.example", Some(ann)).expect("release").expect("ann's");
        assert!(g0.released && g0.certified_until == 120 && now);
        let again = store.release_gateway_name("g0.example", Some(ann)).expect("release").expect("ann's");
        assert!(!again.1, "given up before");
        assert_eq!(bind(ann, ann, &names(40, 2), 30), Ok(true), "room for two more");
        // Until its certificates expire, a name given up is nobody else's, nor a host's.
        let held = NameHolder::Released(ann, 120);
        assert_eq!(bind(bob, bob, &names(0, 1), 119), Err(NameRefusal::Held("g0.example".into(), held)));
        assert_eq!(store.bind_host_name(HostId(4), "g0.example", 119).expect("bind"), Some(held));
        assert_eq!(store.gateway_name_holder("g0.example", 119).expect("holder"), Some(ann));
        // Then it passes on, anew; and is no longer listed as ann's.
        assert_eq!(store.release_gateway_name("g31.example", Some(bob)).expect("release").map(|n| n.1), Some(true));
        assert_eq!(bind(bob, bob, &names(0, 1), 120), Ok(true));
        let g0 = store.gateway_names(Some(bob), 130).expect("list").remove(0);
        assert_eq!((g0.name.as_str(), g0.account, g0.since, g0.certified_until, g0.released), ("g0.example", bob, 120, 220, false));
        assert!(store.gateway_names(Some(ann), 130).expect("list").iter().all(|n| n.name != "g0.example"));
        // A host's name is never an account's to give up, not even an admin's.
        assert_eq!(store.bind_host_name(HostId(5), "h5.example", 10).expect("bind"), None);
        assert_eq!(store.release_gateway_name("h5.example", None).expect("release"), None);

        // A removed account's names (and its delegates') are given up.
        assert!(store.remove_user(ann, 105).expect("remove"));
        let left = store.gateway_names(None, 105).expect("list");
        let theirs: Vec<_> = left.iter().filter(|n| n.account == ann || n.account == reader).collect();
        assert!(theirs.len() == 17 && theirs.iter().all(|n| n.released), "{left:?}");
        let bobs = |released| left.iter().filter(|n| n.account == bob && n.released == released).count();
        assert_eq!((bobs(false), bobs(true)), (16, 1), "{left:?}");
        assert_eq!(bind(bob, bob, &names(1, 1), 200), Err(NameRefusal::TooMany), "bob holds 16 again");
        assert_eq!(store.bind_host_name(HostId(4), "g1.example", 221).expect("bind"), None, "expired, free");
    }

    fn a_shard_is_charged_to_an_account_at_most_its_size_per_window() {
        use crate::store::Read;
        let (_guard, store) = catalog();
        let (ann, bob) = (UserId(1), UserId(2));
        let read = |shard: u8, bytes| Read { host: HostId(1), shard: sid(shard, 0), bytes, shard_size: 1000 };
        let charge = |user, reads: &[Read], now| store.charge_reads(user, reads, 3600, now).expect("charge");
        assert_eq!(charge(ann, &[read(0, 1000)], 10), 1000);
        for _ in 0..20 {
            assert_eq!(charge(ann, &[read(0, 1000)], 20), 0, "asked again: nothing more");
        }
        // Ranges add up to the whole shard, then stop, within one request too.
        assert_eq!(charge(ann, &[read(1, 400), read(1, 400)], 10), 800);
        assert_eq!(charge(ann, &[read(1, 400)], 12), 200);
        assert_eq!(charge(ann, &[read(1, 400)], 13), 0);
        // Accounts, shards and hosts apart.
        assert_eq!(charge(bob, &[read(0, 1000)], 30), 1000, "another account");
        assert_eq!(charge(ann, &[read(2, 1000)], 30), 1000, "another shard");
        assert_eq!(charge(ann, &[Read { host: HostId(2), ..read(0, 1000) }], 30), 1000, "another host");
        // A new window charges again; the closed ones are forgotten, the open ones kept.
        assert_eq!(charge(ann, &[read(0, 1000)], 3610), 1000);
        assert_eq!(store.forget_read_charges(3600, 3630).expect("forget"), 4, "all but the window opened at 3610");
        assert_eq!(charge(ann, &[read(0, 1000)], 3620), 0);
        assert_eq!(charge(bob, &[read(0, 1000)], 3630), 1000);
        // What was charged is in the usage records: egress, and granted per host.
        let sum = |subject: &str, who: i64, kind: &str| {
            store
                .conn()
                .query_i64(
                    "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM meter_records WHERE subject = ?1 AND who = ?2 AND kind = ?3",
                    params![subject, who, kind],
                )
                .expect("sum")
        };
        assert_eq!(sum("user", 1, "egress"), 1000 + 800 + 200 + 1000 + 1000 + 1000);
        assert_eq!(sum("user", 2, "egress"), 2000);
        assert_eq!(sum("host", 1, "granted"), 6000);
        assert_eq!(sum("host", 2, "granted"), 1000);
    }

    fn removing_a_user_drops_its_data_and_disables_its_delegates() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let nas = user(&store, 2, "nas", Role::Appender, None, Some(ann));
        let bob = user(&store, 3, "bob", Role::User, None, None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2]).commit(&store, ann, s, 1);
        store.commit_object(ann, "a", s, b"m", 10, &[cid(1)], false, 2).expect("object");
        store.add_session_refs(ann, ann, s, &[cid(2)], 2).expect("refs");
        store.commit_snapshot(ann, ann, s, "snap", b"r", 3).expect("snapshot");
        // Bob stores the same chunk ids under the same name.
        let sb = store.add_session(bob, b"k", 0, 100).expect("session");
        Pack::new(2, 1, &[h]).chunks(&[1]).commit(&store, bob, sb, 1);
        store.commit_object(bob, "a", sb, b"m", 10, &[cid(1)], false, 2).expect("object");

        // A write session of ann's still open when it goes, with references and a pack.
        let open = store.add_session(ann, b"k", 150, 10_000).expect("session");
        Pack::new(3, 1, &[h]).chunks(&[3]).commit(&store, ann, open, 150);
        store.add_session_refs(ann, ann, open, &[cid(1), cid(3)], 150).expect("refs");

        let code = crate::store::RecoveryBinding { verifier: [1; 32], recipient: "age1r".into(), binding: vec![1] };
        store.set_recovery(ann, login(&store, ann).0.device, &[9; 32], &code, b"sealed key file", 3).expect("recovery code");
        assert!(store.remove_user(ann, 200).expect("remove"));
        assert!(store.recovery(ann).expect("recovery").is_none(), "nothing is kept of a removed user's keys");
        let disabled = |id| login(&store, id).0.disabled;
        assert!(disabled(ann) && disabled(nas) && !disabled(bob));
        assert!(store.user_exists(ann).expect("exists"), "disabled, not forgotten");
        assert!(store.list_objects(ann, "").expect("list").is_empty());
        assert!(store.get_object(ann, "a", None).expect("get").is_none());
        assert!(store.snapshots(ann).expect("snapshots").is_empty());
        assert_eq!(store.usage(ann).expect("usage"), 0, "its packs are released, its open session's too");
        assert_eq!(store.conn().usage_summed(ann).expect("sum"), 0);
        assert_eq!(store.quota_usage(ann).expect("usage"), 0, "nothing of it counts");
        store.drop_idle_sessions(0, 100, 20_000).expect("idle sessions");
        assert_eq!(store.quota_usage(ann).expect("usage"), 0, "nor is anything given back later");
        // Released at 200: its shards stay on their hosts for the release grace.
        let due = |by| {
            let mut due = store.shards_to_delete(10, by).expect("to delete").iter().map(|d| d.0).collect::<Vec<_>>();
            due.sort();
            due
        };
        assert_eq!(due(199), [], "within the release grace");
        assert_eq!(due(200), [pid(1), pid(3)]);

        assert_eq!(store.get_object(bob, "a", None).expect("get").expect("bob's").0.version, 1);
        assert_eq!(store.usage(bob).expect("usage"), 64);
        assert_eq!(store.known_chunks(bob, bob, &[cid(1), cid(2)]).expect("known"), [cid(1)]);
        assert!(!store.remove_user(UserId(999), 201).expect("no such user"));
    }

    fn released_data_beyond_the_quota_has_no_grace() {
        // A released pack stays on its hosts for the grace without counting against its
        // owner's quota; churning past the quota must not hold more than that on hosts.
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        for n in 1..=3 {
            Pack::new(n, 1, &[h]).commit(&store, ann, s, 1);
        }
        // A quota lowered below what it holds (a commit past it is refused).
        assert!(store.set_quota(ann, Some(150)).expect("quota"));
        let due = |by| store.shards_to_delete(10, by).expect("to delete").iter().map(|d| d.0).collect::<Vec<_>>();
        assert!(store.pack_of_user(ann, &pid(1)).expect("pack").is_some());
        assert_eq!(store.conn().release(&pid(1), 50).expect("release"), 1);
        assert!(store.pack_of_user(ann, &pid(1)).expect("pack").is_none(), "a released pack is granted no rebuild");
        assert_eq!(store.conn().release(&pid(2), 60).expect("release"), 1);
        assert_eq!(due(49), [], "128 bytes released, within the quota of 150: both in the grace");
        assert_eq!(store.conn().release(&pid(3), 70).expect("release"), 1);
        let mut gone = due(0);
        gone.sort();
        assert_eq!(gone, [pid(1), pid(2), pid(3)], "192 bytes released, past the quota: no grace");
    }

    fn a_policy_is_stored_replaced_and_cleared() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let bob = user(&store, 2, "bob", Role::User, None, None);
        assert_eq!(store.policy(ann).expect("policy"), None);
        let p = Policy {
            max_price: Some(u64::MAX - 1),
            zones: vec!["eu-west".into(), "zürich".into(), "o'hare \"t1\"".into()],
            exclude_zones: vec!["us-?1".into()],
            min_reputation: Some(80),
            min_period_secs: Some(30 * 86_400),
        };
        store.set_policy(ann, Some(&p)).expect("set");
        assert_eq!(store.policy(ann).expect("policy"), Some(p.clone()));
        assert_eq!(store.policy(bob).expect("policy"), None, "per user");
        let narrower = Policy { zones: vec!["ap".into()], ..Policy::default() };
        store.set_policy(ann, Some(&narrower)).expect("replace");
        assert_eq!(store.policy(ann).expect("policy"), Some(narrower));
        store.set_policy(bob, Some(&Policy::default())).expect("set");
        assert_eq!(store.policy(bob).expect("policy"), Some(Policy::default()));
        store.set_policy(ann, None).expect("clear");
        assert_eq!(store.policy(ann).expect("policy"), None);
        store.set_policy(ann, None).expect("clearing nothing");
        assert!(store.set_policy(UserId(999), Some(&p)).is_err(), "no policy for a user that does not exist");
        // An unreadable stored policy counts as none.
        store.conn().execute("UPDATE policies SET policy = '{not json' WHERE user = ?1", params![bob.0 as i64]).expect("sql");
        assert_eq!(store.policy(bob).expect("policy"), None);
    }

    fn hosts_keep_their_secret_hash_and_receipt_key() {
        let (_guard, store) = catalog();
        let a = store.add_host(&[0xff; 32], "http://[::1]:7", "zone 'ü'", 3 << 40, None, 0).expect("host");
        let b = store.add_host(&[0; 32], "http://127.0.0.1:8", "z", 1, Some(&[0x80; 32]), 0).expect("host");
        assert_eq!(store.host_secret_hash(a).expect("hash"), Some([0xff; 32]));
        assert_eq!(store.host_secret_hash(b).expect("hash"), Some([0; 32]));
        assert_eq!(store.host_secret_hash(HostId(999)).expect("hash"), None);
        assert_eq!(store.receipt_key(a).expect("key"), None, "joined without one");
        assert_eq!(store.receipt_key(b).expect("key"), Some([0x80; 32]));
        assert_eq!(store.receipt_key(HostId(999)).expect("key"), None);

        let mut k1 = [0u8; 32];
        k1[31] = 0xff;
        assert!(!store.set_receipt_key(a, &k1).expect("set"), "a first key replaces none");
        assert_eq!(store.receipt_key(a).expect("key"), Some(k1));
        assert!(!store.set_receipt_key(a, &k1).expect("set"), "the same key again");
        assert!(store.set_receipt_key(a, &[7; 32]).expect("set"), "another key");
        assert_eq!(store.receipt_key(a).expect("key"), Some([7; 32]));
        assert_eq!(store.receipt_key(b).expect("key"), Some([0x80; 32]), "per host");
        assert!(!store.set_receipt_key(HostId(999), &k1).expect("set"));
        assert_eq!(store.receipt_key(HostId(999)).expect("key"), None, "no row made");
        let hosts = store.hosts().expect("hosts");
        let listed: Vec<_> = hosts.iter().map(|h| (h.id, h.zone.as_str(), h.capacity, h.receipt_key)).collect();
        assert_eq!(listed, [(a, "zone 'ü'", 3 << 40, Some([7; 32])), (b, "z", 1, Some([0x80; 32]))]);
    }

    fn an_overwrite_replaces_older_versions_and_an_exclusive_create_never_wins_over_one() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2]).commit(&store, ann, s, 1);
        let (one, two) = ([cid(1)], [cid(2)]);
        let object = |meta: &'static [u8], chunk: u8| NewObject {
            name: "k",
            session: s,
            manifest: b"m",
            meta: Some(meta),
            size: 1,
            chunks: if chunk == 1 { &one } else { &two },
            if_attributes: None,
        };
        let none = (None, None);
        assert_eq!(store.commit_object_held(ann, &object(b"one", 1), true, false, none, 2).expect("create"), (1, 0));
        // An exclusive create loses to the version that exists, whoever asks.
        assert!(matches!(store.commit_object_held(ann, &object(b"two", 2), true, true, none, 3), Err(StoreError::NameTaken)));
        // Without replace, a second version; with it, the older ones go in the same commit.
        assert_eq!(store.commit_object_held(ann, &object(b"two", 2), false, false, none, 4).expect("add").0, 2);
        assert_eq!(store.commit_object_held(ann, &object(b"three", 2), false, true, none, 5).expect("replace").0, 3);
        let (o, _) = store.get_object(ann, "k", None).expect("get").expect("stored");
        assert_eq!((o.version, o.meta.as_deref()), (3, Some(&b"three"[..])));
        let listed = store.list_objects(ann, "k").expect("list");
        assert_eq!(listed.iter().map(|o| (o.version, o.meta.clone())).collect::<Vec<_>>(), [(3, Some(b"three".to_vec()))]);
        assert_eq!(store.remove_object(ann, "k", 6).expect("remove").0, 1, "one version was left");
    }

    fn objects_count_what_the_catalog_keeps_of_them_against_the_quota() {
        let (_guard, store) = catalog();
        // 64 bytes of pack on hosts, its chunk's row, and room for about two objects of a
        // 1,000-byte manifest.
        let base = 64 + CHUNK_ROW_BYTES;
        let ann = user(&store, 1, "ann", Role::User, Some(base + 2 * 1200 + 100), None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1]).commit(&store, ann, s, 1);
        assert_eq!(store.quota_usage(ann).expect("usage"), base, "the pack and its chunk's row");
        let manifest = [7u8; 1000];
        let object = |name| NewObject {
            name,
            session: s,
            manifest: &manifest,
            meta: Some(b"attrs"),
            size: 0,
            chunks: &[],
            if_attributes: None,
        };
        let none = (None, None);
        let each = 1 + 1000 + 5 + 128;
        store.commit_object_held(ann, &object("a"), false, false, none, 2).expect("a");
        store.commit_object_held(ann, &object("b"), false, false, none, 2).expect("b");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + 2 * each);
        assert_eq!(store.usage(ann).expect("usage"), 64, "what the hosts hold stays apart");
        assert!(matches!(
            store.commit_object_held(ann, &object("c"), false, false, none, 3),
            Err(StoreError::QuotaFull)
        ));
        // Removing an object, or replacing its versions, gives its bytes back.
        store.remove_object(ann, "a", 4).expect("remove");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + each);
        store.commit_object_held(ann, &object("b"), false, true, none, 5).expect("replace b");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + each, "the replaced version is given back");
        store.commit_object_held(ann, &object("c"), false, false, none, 6).expect("c fits again");
        // A name's bytes are counted, not its characters, both ways.
        store.remove_object(ann, "c", 6).expect("remove c");
        store.commit_object_held(ann, &object("üñï"), false, false, none, 6).expect("a name of two-byte characters");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + 2 * each + 5);
        store.remove_object(ann, "üñï", 6).expect("remove it");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + each);
        // A removed user's objects count nothing any more (its packs go when its session ends).
        assert!(store.remove_user(ann, 7).expect("remove"));
        assert_eq!(store.quota_usage(ann).expect("usage"), store.usage(ann).expect("usage"));
    }

    fn a_sessions_wrapped_key_counts_against_the_quota_while_its_row_stays() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, Some(10_000), None);
        let key = [9u8; 4096];
        // An object of a few bytes under each of many sessions kept 4 KiB of key each,
        // uncounted: the catalog grew 32 times faster than the quota said.
        let s = store.add_session(ann, &key, 0, 100).expect("session");
        assert_eq!(store.quota_usage(ann).expect("usage"), 4096, "counted from the start");
        let object = NewObject {
            name: "a",
            session: s,
            manifest: b"",
            meta: None,
            size: 0,
            chunks: &[],
            if_attributes: None,
        };
        store.commit_object_held(ann, &object, false, false, (None, None), 1).expect("object");
        store.close_session(ann, ann, s).expect("close");
        let each = 1 + 128;
        assert_eq!(store.quota_usage(ann).expect("usage"), 4096 + each, "kept with the object under it");
        let second = store.add_session(ann, &key, 2, 100).expect("a second session fits");
        assert!(
            matches!(store.add_session(ann, &key, 2, 100), Err(StoreError::QuotaFull)),
            "a third key passes the quota"
        );
        // Closed with nothing under it, a session goes, and its key with it.
        store.close_session(ann, ann, second).expect("close");
        assert_eq!(store.quota_usage(ann).expect("usage"), 4096 + each);
        // The object gone, the session goes once idle, and nothing is counted.
        store.remove_object(ann, "a", 3).expect("remove");
        store.drop_idle_sessions(0, 100, 1_000_000).expect("drop idle");
        assert_eq!(store.quota_usage(ann).expect("usage"), 0);
        assert!(store.add_session(ann, &key, 4, 100).is_ok() && store.add_session(ann, &key, 4, 100).is_ok());
    }

    fn an_objects_chunk_references_count_against_the_quota() {
        // Attack (red team): commits of tiny objects naming every chunk of the account each,
        // 3,000 references a commit, grew the catalog 20 MB in 20 s and the catalog backups
        // from 0.4 to 39 MiB, while the quota counted 169 bytes a commit.
        let (_guard, store) = catalog();
        let r = crate::store::backup::SNAPSHOT_REF_BYTES;
        let base = 64 + 4 * CHUNK_ROW_BYTES;
        let each = 1 + 32 + 128;
        // Room for one object naming the four chunks (once each, whatever the list repeats).
        let ann = user(&store, 1, "ann", Role::User, Some(base + each + 4 * r + 100), None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2, 3, 4]).commit(&store, ann, s, 1);
        let chunks = [cid(1), cid(2), cid(3), cid(4), cid(1)];
        let object = |name| NewObject {
            name,
            session: s,
            manifest: &[7u8; 32],
            meta: None,
            size: 0,
            chunks: &chunks,
            if_attributes: None,
        };
        let none = (None, None);
        store.commit_object_held(ann, &object("a"), false, false, none, 2).expect("a");
        assert_eq!(store.quota_usage(ann).expect("usage"), base + each + 4 * r, "its four references count");
        assert!(matches!(
            store.commit_object_held(ann, &object("b"), false, false, none, 3),
            Err(StoreError::QuotaFull)
        ));
        // Given back with the version.
        store.remove_object(ann, "a", 5).expect("remove");
        assert_eq!(store.quota_usage(ann).expect("usage"), base);
        store.commit_object_held(ann, &object("b"), false, false, none, 6).expect("b fits now");
    }

    fn a_pack_whose_chunk_rows_pass_the_quota_is_refused_whole() {
        // Its placement was checked for its shards' bytes only: a pack may then declare a
        // chunk per 30 bytes, each row costing more quota than the bytes it names. Attack:
        // an account took 4.4 times its quota so, refused only at its next placement.
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, Some(2 * 64 + 3 * CHUNK_ROW_BYTES), None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2]).commit(&store, ann, s, 1);
        let before = store.quota_usage(ann).expect("usage");
        assert_eq!(before, 64 + 2 * CHUNK_ROW_BYTES);
        let refused = Pack::new(2, 1, &[h]).chunks(&[3, 4]).try_commit(&store, ann, s, 2);
        assert!(matches!(refused, Err(StoreError::QuotaFull)), "{refused:?}");
        assert_eq!(store.quota_usage(ann).expect("usage"), before, "nothing of it counts");
        assert_eq!(store.known_chunks(ann, ann, &[cid(3), cid(4)]).expect("known"), [], "nothing of it is recorded");
        assert!(store.pack_of_user(ann, &pid(2)).expect("pack").is_none());
        // One row fewer fits exactly; chunks found stored already add no row.
        Pack::new(3, 1, &[h]).chunks(&[1, 3]).commit(&store, ann, s, 3);
        assert_eq!(store.quota_usage(ann).expect("usage"), 2 * 64 + 3 * CHUNK_ROW_BYTES);
        // Nor does a pack of no chunks pass it (a placement raced past the quota: red team).
        let refused = Pack::new(5, 1, &[h]).try_commit(&store, ann, s, 4);
        assert!(matches!(refused, Err(StoreError::QuotaFull)), "{refused:?}");
    }

    fn references_count_against_the_quota_from_when_they_are_recorded_until_they_go() {
        let (_guard, store) = catalog();
        let r = crate::store::backup::SNAPSHOT_REF_BYTES;
        // What a snapshot's record (one byte here) and row count.
        let row = 1 + crate::store::backup::SNAPSHOT_ROW_BYTES;
        // A pack of four chunks (64 bytes, and their rows) and room for twelve references and
        // three snapshots.
        let base = 64 + 4 * CHUNK_ROW_BYTES;
        let ann = user(&store, 1, "ann", Role::User, Some(base + 12 * r + 3 * row + 10), None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2, 3, 4]).commit(&store, ann, s, 1);
        assert_eq!(store.quota_usage(ann).expect("usage"), base);
        let all = [cid(1), cid(2), cid(3), cid(4)];
        let snapshot = |id: &str, chunks: &[ChunkId], hold| {
            let s = store.add_session(ann, b"", 2, 100).expect("session");
            store.add_session_refs(ann, ann, s, chunks, 2)?;
            store.commit_snapshot_held(ann, ann, s, id, b"r", (None, hold), 3)
        };
        let used = || store.quota_usage(ann).expect("usage");
        // The first snapshot naming the pack's chunks adds their set (four rows) and its own
        // row; the next naming the same chunks only its row.
        snapshot("a", &all, None).expect("a");
        assert_eq!(used(), base + 5 * r + row);
        snapshot("b", &all, Some(50)).expect("b, to expire at 50");
        assert_eq!(used(), base + 6 * r + 2 * row);
        // Another choice of the pack's chunks is a set of its own.
        snapshot("c", &all[..3], None).expect("c");
        assert_eq!(used(), base + 10 * r + 3 * row);
        // One more is refused as its session records them, and nothing of it is kept.
        assert!(matches!(snapshot("d", &all[1..], None), Err(StoreError::QuotaFull)));
        assert_eq!(used(), base + 10 * r + 3 * row);
        // Forgetting a snapshot gives back its row, and the sets no other snapshot names.
        assert_eq!(store.forget(ann, &["a".into()], 4).expect("forget"), 1);
        assert_eq!(used(), base + 9 * r + 2 * row, "b still names a's set");
        assert_eq!(store.forget(ann, &["c".into()], 4).expect("forget"), 1);
        assert_eq!(used(), base + 5 * r + row);
        snapshot("e", &all, None).expect("e");
        snapshot("d", &all[1..], None).expect("d fits now");
        assert_eq!(used(), base + 10 * r + 3 * row);
        // So does its expiry.
        assert_eq!(store.expire(60, 10, None).expect("expire").snapshots, 1);
        assert_eq!(used(), base + 9 * r + 2 * row);
        assert_eq!(store.forget(ann, &["d".into()], 61).expect("forget"), 1);
        let kept = base + 5 * r + row;
        assert_eq!(used(), kept);
        // References a session records count while it is open, a second time not at all, and
        // are given back when it ends without a snapshot: closed, or lapsed (the deleter's
        // look at idle sessions, or a prune).
        let open = store.add_session(ann, b"", 60, 100).expect("session");
        store.add_session_refs(ann, ann, open, &all, 61).expect("refs");
        store.add_session_refs(ann, ann, open, &all, 61).expect("the same again");
        assert_eq!(used(), kept + 4 * r);
        store.close_session(ann, ann, open).expect("close");
        assert_eq!(used(), kept);
        let lapsing = store.add_session(ann, b"", 60, 100).expect("session");
        assert_eq!(store.lookup_for_session(ann, ann, lapsing, &all, 61).expect("dedup hits").len(), 4);
        assert_eq!(used(), kept + 4 * r);
        store.drop_idle_sessions(0, 100, 101).expect("idle sessions");
        assert_eq!(used(), kept);
        let pruned = store.add_session(ann, b"", 60, 100).expect("session");
        store.add_session_refs(ann, ann, pruned, &all, 61).expect("refs");
        store.prune(ann, 0, 101, 101 + 3600).expect("prune");
        assert_eq!(used(), kept);
        // An account without a quota is not refused (the grid's room is its bound).
        let bob = user(&store, 2, "bob", Role::User, None, None);
        let s = store.add_session(bob, b"k", 0, 100).expect("session");
        Pack::new(2, 1, &[h]).chunks(&[1, 2, 3, 4]).commit(&store, bob, s, 1);
        for n in 0..5 {
            let s = store.add_session(bob, b"k", 2, 100).expect("session");
            store.add_session_refs(bob, bob, s, &all, 2).expect("refs");
            store.commit_snapshot(bob, bob, s, &format!("bob{n}"), b"r", 3).expect("no quota, no refusal");
        }
    }

    fn a_write_session_stays_open_a_week_at_most() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let app = user(&store, 2, "nas", Role::Appender, None, Some(ann));
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1]).commit(&store, ann, s, 1);
        let week = crate::store::backup::MAX_SESSION_AGE;
        let theirs = store.open_session(ann, app, b"k", 1000, 1100).expect("session");
        // Kept alive, for as long as it asks, it lives until a week after it opened, no longer.
        for now in [1050, 1000 + week / 2, 1000 + week - 60] {
            store.keep_session(ann, app, theirs, now, now + 2 * week).expect("kept alive");
        }
        store.add_session_refs(ann, app, theirs, &[cid(1)], 1000 + week - 1).expect("open until then");
        assert!(matches!(
            store.add_session_refs(ann, app, theirs, &[cid(1)], 1000 + week),
            Err(StoreError::SessionClosed)
        ));
        // One kept open past a week before sessions had an age limit is refused when renewed.
        let again = store.open_session(ann, app, b"k", 0, 2 * week).expect("session");
        assert!(matches!(
            store.keep_session(ann, app, again, week, week + 600),
            Err(StoreError::SessionAged { days: 7 })
        ));
    }

    fn an_owner_disables_its_delegate_and_what_only_its_sessions_kept_goes() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let nas = user(&store, 2, "nas", Role::Appender, None, Some(ann));
        let bob = user(&store, 3, "bob", Role::User, None, None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1]).commit(&store, ann, s, 1);
        store.commit_object(ann, "a", s, b"m", 10, &[cid(1)], false, 2).expect("object");
        store.close_session(ann, ann, s).expect("close");
        // The appender's session references ann's chunk, and is kept alive; ann deletes it.
        let pin = store.open_session(ann, nas, b"k", 3, 10_000).expect("session");
        store.add_session_refs(ann, nas, pin, &[cid(1)], 4).expect("refs");
        store.remove_object(ann, "a", 5).expect("remove");
        assert_eq!(store.prune(ann, 0, 6, 6).expect("prune").0.chunks_removed, 0, "kept for the open session");
        // Only its owner disables it; nothing happens to anyone else.
        assert_eq!(store.disable_delegate(bob, nas).expect("bob's"), None, "another user's delegate");
        assert_eq!(store.disable_delegate(nas, nas).expect("itself"), None, "a delegate is no owner");
        assert_eq!(store.disable_delegate(ann, ann).expect("ann"), None, "the owner itself");
        assert!(!login(&store, nas).0.disabled);
        assert_eq!(store.disable_delegate(ann, nas).expect("ann's"), Some(true));
        assert!(login(&store, nas).0.disabled && !login(&store, ann).0.disabled);
        assert!(matches!(store.keep_session(ann, nas, pin, 7, 600), Err(StoreError::SessionClosed)), "its sessions end");
        let swept = store.prune(ann, 0, 7, 7).expect("prune").0;
        assert_eq!((swept.chunks_removed, swept.packs_released), (1, 1), "what only its session kept goes");
        assert_eq!(store.disable_delegate(ann, nas).expect("again"), Some(false), "disabling again changes nothing, and is no error");
    }

    fn objects_committed_together_are_each_refused_or_committed_on_their_own() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let bob = user(&store, 2, "bob", Role::User, None, None);
        let h = host(&store, 1, 0);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        let sb = store.add_session(bob, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2]).commit(&store, ann, s, 1);
        let (one, two, lost) = (&[cid(1)][..], &[cid(2)][..], &[cid(1), cid(9)][..]);
        fn object<'a>(name: &'a str, session: u64, meta: &'a [u8], chunks: &'a [ChunkId]) -> NewObject<'a> {
            NewObject { name, session, manifest: b"m", meta: Some(meta), size: 1, chunks, if_attributes: None }
        }
        let none = (None, None);
        store.commit_object_held(ann, &object("taken", s, b"first", one), true, false, none, 2).expect("create");
        let batch = [
            (object("a", s, b"a", one), true, false, none),
            // A create of a taken name: refused, and the first version stays.
            (object("taken", s, b"second", two), true, false, none),
            (object("b", s, b"b", two), false, false, none),
            // A chunk that is not stored.
            (object("c", s, b"c", lost), false, false, none),
            // Another user's session.
            (object("d", sb, b"d", one), false, false, none),
            // An overwrite in the same transaction as the others.
            (object("b", s, b"b2", one), false, true, none),
        ];
        let out = store.commit_objects_held(ann, &batch, 3).expect("batch");
        assert_eq!(out.len(), 6);
        assert!(matches!(out[0], Ok((1, 0))), "{:?}", out[0]);
        assert!(matches!(out[1], Err(StoreError::NameTaken)), "{:?}", out[1]);
        assert!(matches!(out[2], Ok((1, 0))), "{:?}", out[2]);
        assert!(matches!(out[3], Err(StoreError::MissingChunks(1))), "{:?}", out[3]);
        assert!(matches!(out[4], Err(StoreError::BadReference)), "{:?}", out[4]);
        assert!(matches!(out[5], Ok((2, _))), "{:?}", out[5]);
        let listed: Vec<_> =
            store.list_objects(ann, "").expect("list").into_iter().map(|o| (o.name, o.version, o.meta)).collect();
        assert_eq!(
            listed,
            [
                ("a".to_owned(), 1, Some(b"a".to_vec())),
                ("b".to_owned(), 2, Some(b"b2".to_vec())),
                ("taken".to_owned(), 1, Some(b"first".to_vec())),
            ],
            "the refused ones left nothing, the overwrite replaced"
        );
        assert!(store.list_objects(bob, "").expect("list").is_empty());
        // Conditional on the latest version's sealed attributes: the one that names them wins,
        // the stale one is refused, in one transaction as alone.
        let (b2, stale) = (attributes_tag(b"b2"), attributes_tag(b"a stale one"));
        let on = |name, tag| NewObject { if_attributes: Some(tag), ..object(name, s, b"if", one) };
        let out = store.commit_objects_held(ann, &[(on("b", &b2), false, true, none), (on("a", &stale), false, true, none)], 4);
        let out = out.expect("batch");
        assert!(matches!(out[0], Ok((3, _))), "{:?}", out[0]);
        assert!(matches!(out[1], Err(StoreError::Changed)), "{:?}", out[1]);
        let single = store.commit_object_held(ann, &on("b", &b2), false, true, none, 5);
        assert!(matches!(single, Err(StoreError::Changed)), "{single:?}");
        // A name deleted and written again starts at version 1 again, as the version matched
        // did: the condition still tells them apart.
        let a1 = attributes_tag(b"a");
        store.remove_object(ann, "a", 6).expect("remove");
        assert!(matches!(store.commit_object_held(ann, &object("a", s, b"again", two), false, true, none, 7), Ok((1, _))));
        let aba = store.commit_object_held(ann, &on("a", &a1), false, true, none, 8);
        assert!(matches!(aba, Err(StoreError::Changed)), "{aba:?}");
        let gone = store.commit_object_held(ann, &on("gone", &a1), false, true, none, 8);
        assert!(matches!(gone, Err(StoreError::Changed)), "{gone:?}");
    }

    fn objects_are_listed_by_prefix_read_and_removed() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let bob = user(&store, 2, "bob", Role::User, None, None);
        let h = host(&store, 1, 0);
        let wrapped = b"wrapped \x00\xff key".to_vec();
        let s = store.add_session(ann, &wrapped, 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1, 2]).commit(&store, ann, s, 1);
        Pack::new(2, 1, &[h]).chunks(&[3]).commit(&store, ann, s, 1);
        let big = 6 * GIB + 1;
        assert_eq!(store.commit_object(ann, "docs/b", s, b"m1", 1, &[cid(1)], false, 10).expect("commit"), 1);
        assert_eq!(store.commit_object(ann, "docs/b", s, b"m\x00\xff", big, &[cid(1), cid(2)], false, 11).expect("commit"), 2);
        for name in ["docs/ü'x", "docs%_/c", "Zeta", "doc"] {
            assert_eq!(store.commit_object(ann, name, s, b"m", 0, &[cid(3)], false, 12).expect("commit"), 1);
        }
        let sb = store.add_session(bob, b"k", 0, 100).expect("session");
        store.commit_object(bob, "docs/bob", sb, b"m", 0, &[], false, 12).expect("commit");
        assert!(matches!(
            store.commit_object(ann, "x", s, b"m", 0, &[cid(3), cid(9)], false, 13),
            Err(StoreError::MissingChunks(1))
        ));
        assert!(matches!(store.commit_object(ann, "x", sb, b"m", 0, &[], false, 13), Err(StoreError::BadReference)));

        let names = |prefix: &str| -> Vec<String> {
            store.list_objects(ann, prefix).expect("list").into_iter().map(|o| o.name).collect()
        };
        assert_eq!(names(""), ["Zeta", "doc", "docs%_/c", "docs/b", "docs/ü'x"], "the latest versions, by name (bytes)");
        assert_eq!(names("docs"), ["docs%_/c", "docs/b", "docs/ü'x"]);
        assert_eq!(names("docs%"), ["docs%_/c"], "a prefix has no wildcards");
        assert_eq!(names("docs/ü"), ["docs/ü'x"], "a prefix ending in a multibyte character");
        assert_eq!(names("docs/ü'x"), ["docs/ü'x"], "a whole name");
        assert!(names("docs/ü'xy").is_empty());
        assert!(names("zeta").is_empty(), "case counts");
        let listed = store.list_objects(ann, "docs/b").expect("list");
        let o = &listed[0];
        assert_eq!((listed.len(), o.version, o.session, o.size, o.created), (1, 2, s, big, 11));
        assert!(o.manifest.is_empty(), "listings carry no manifests");

        let (o, key) = store.get_object(ann, "docs/b", None).expect("get").expect("stored");
        assert_eq!((o.name.as_str(), o.version, o.size, o.created, o.manifest), ("docs/b", 2, big, 11, b"m\x00\xff".to_vec()));
        assert_eq!(key, wrapped);
        assert!(store.get_object(bob, "docs/b", None).expect("get").is_none(), "per user");
        assert!(store.get_object(ann, "docs/", None).expect("get").is_none(), "names are exact");

        // Removing every version frees chunks 1 and 2 (the session has ended), and with them
        // pack 1; pack 2 holds chunk 3, still used.
        assert_eq!(store.remove_object(ann, "docs/b", 200).expect("remove"), (2, 1));
        assert!(store.get_object(ann, "docs/b", None).expect("get").is_none());
        assert_eq!(names("docs"), ["docs%_/c", "docs/ü'x"]);
        assert_eq!(store.remove_object(ann, "docs/b", 201).expect("remove"), (0, 0));
        let deleting: Vec<PackId> = store.shards_to_delete(10, u64::MAX).expect("to delete").iter().map(|d| d.0).collect();
        assert_eq!(deleting, [pid(1)]);
        assert_eq!(store.remove_object(ann, "docs/ü'x", 202).expect("remove"), (1, 0));
        assert_eq!(store.list_objects(bob, "").expect("list").len(), 1);
    }

    fn known_chunks_are_those_of_writers_the_caller_may_build_on() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let app = user(&store, 2, "laptop", Role::Appender, None, Some(ann));
        store.add_token(&[3; 32], "nas", Role::Appender, None, Some(ann)).expect("token");
        store.trust_token(&[3; 32]).expect("trust");
        let nas = store.redeem_token(&[3; 32], "age1pk", &[252; 32], "", 0).expect("redeem").expect("user").me;
        let bob = user(&store, 4, "bob", Role::User, None, None);
        let h = host(&store, 1, 0);
        let own = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[1]).commit(&store, ann, own, 1);
        let theirs = store.open_session(ann, app, b"k", 0, 100).expect("session");
        Pack::new(2, 1, &[h]).chunks(&[2]).commit(&store, ann, theirs, 1);
        let trusted = store.open_session(ann, nas, b"k", 0, 100).expect("session");
        Pack::new(3, 1, &[h]).chunks(&[3]).commit(&store, ann, trusted, 1);
        let bobs = store.add_session(bob, b"k", 0, 100).expect("session");
        Pack::new(4, 1, &[h]).chunks(&[4]).commit(&store, bob, bobs, 1);

        let known = |user, me, ids: &[u8]| -> Vec<ChunkId> {
            let ids: Vec<ChunkId> = ids.iter().map(|i| cid(*i)).collect();
            store.known_chunks(user, me, &ids).expect("known")
        };
        assert_eq!(known(ann, ann, &[4, 3, 2, 1, 9]), [cid(3), cid(1)], "in the order asked; not the untrusted delegate's");
        assert_eq!(known(ann, app, &[1, 2, 3]), [cid(1), cid(2), cid(3)], "a delegate builds on its own");
        assert_eq!(known(ann, nas, &[1, 2, 3]), [cid(1), cid(3)]);
        assert_eq!(known(bob, bob, &[1, 4]), [cid(4)], "per user");
        assert!(known(ann, ann, &[]).is_empty());
        assert!(store.set_trusted(ann, app, true).expect("trust"));
        assert_eq!(known(ann, ann, &[2]), [cid(2)]);
    }

    fn a_locked_chunk_keeps_its_copy_beside_the_one_that_takes_its_id_over() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let app = user(&store, 2, "nas", Role::Appender, None, Some(ann));
        let h = host(&store, 1, 0);
        // The untrusted appender's locked snapshot references its copy of chunk 5.
        let theirs = store.open_session(ann, app, b"k", 0, 100).expect("session");
        Pack::new(1, 1, &[h]).chunks(&[5]).commit(&store, ann, theirs, 1);
        store.add_session_refs(ann, app, theirs, &[cid(5)], 2).expect("refs");
        let lock = crate::lock::Lock { mode: scatter_proto::api::LockMode::Compliance, until: 1000 };
        store.commit_snapshot_held(ann, app, theirs, "s1", b"record", (Some(lock), None), 3).expect("snapshot");
        // The owner's copy takes the id over; the locked one stays, second in line.
        let own = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(2, 1, &[h]).chunks(&[5]).commit(&store, ann, own, 4);
        let located = store.locate(ann, &[cid(5)]).expect("locate");
        assert_eq!(located.chunks.iter().map(|c| c.1).collect::<Vec<_>>(), [pid(2)]);
        assert_eq!(located.kept.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), [(cid(5), pid(1))]);
        assert_eq!(located.packs.len(), 2, "both packs, with their shards");
        let deleting = |store: &Store| -> Vec<PackId> {
            store.shards_to_delete(10, u64::MAX).expect("to delete").iter().map(|d| d.0).collect()
        };
        store.prune(ann, 100, 500, 600).expect("prune");
        assert!(deleting(&store).is_empty(), "a pack holding a copy a lock keeps was released");
        // A lock on a snapshot made after the takeover reads the copy that took the id over:
        // it keeps the old one no longer than the lock that held it.
        let own_later = store.add_session(ann, b"k", 600, 5000).expect("session");
        store.add_session_refs(ann, ann, own_later, &[cid(5)], 600).expect("refs");
        let later = crate::lock::Lock { mode: scatter_proto::api::LockMode::Compliance, until: 9000 };
        store.commit_snapshot_held(ann, ann, own_later, "s2", b"record", (Some(later), None), 601).expect("snapshot");
        // Once the lock ends, the next prune lets the copy and its pack go.
        store.prune(ann, 100, 1000, 1100).expect("prune");
        assert!(store.locate(ann, &[cid(5)]).expect("locate").kept.is_empty());
        assert_eq!(deleting(&store), [pid(1)]);
        // A copy no lock holds simply gives way.
        let again = store.open_session(ann, app, b"k", 1000, 2000).expect("session");
        Pack::new(3, 1, &[h]).chunks(&[6]).commit(&store, ann, again, 1001);
        Pack::new(4, 1, &[h]).chunks(&[6]).commit(&store, ann, own, 1002);
        assert!(store.locate(ann, &[cid(6)]).expect("locate").kept.is_empty());
    }

    fn shard_of_user_finds_the_users_healthy_shards_on_a_host() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let bob = user(&store, 2, "bob", Role::User, None, None);
        let hosts = [host(&store, 1, 0), host(&store, 2, 0), host(&store, 3, 0)];
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(1, 2, &hosts).shard_size(5 * GIB).commit(&store, ann, s, 1);
        Pack::new(2, 1, &hosts[..1]).commit(&store, ann, s, 1);
        let of = |user, host, shard| store.shard_of_user(user, host, &shard).expect("shard");
        assert_eq!(of(ann, hosts[0], sid(1, 0)), Some((pid(1), 0, 5 * GIB)));
        assert_eq!(of(ann, hosts[2], sid(1, 2)), Some((pid(1), 2, 5 * GIB)));
        assert_eq!(of(ann, hosts[1], sid(1, 0)), None, "another host");
        assert_eq!(of(bob, hosts[0], sid(1, 0)), None, "another user");
        assert_eq!(of(ann, hosts[0], sid(9, 0)), None, "no such shard");
        set_shard_state(&store, 1, 1, "lost");
        assert_eq!(of(ann, hosts[1], sid(1, 1)), None, "a lost shard");
        release_pack(&store, 2);
        assert_eq!(of(ann, hosts[0], sid(2, 0)), None, "a released pack");
        assert_eq!(of(ann, hosts[0], sid(1, 0)), Some((pid(1), 0, 5 * GIB)));
    }

    fn health_and_degraded_packs_put_the_most_endangered_first() {
        let (_guard, store) = catalog();
        assert_eq!(
            (store.health(500).expect("health").packs_total, store.degraded_packs(500, 10, &Default::default()).expect("degraded").len()),
            (0, 0)
        );
        let ann = user(&store, 1, "ann", Role::User, None, None);
        // 1 to 3 healthy, 4 silent since 100, 5 draining.
        let h: Vec<HostId> = (1..=5).map(|n| host(&store, n, if n == 4 { 100 } else { 1000 })).collect();
        assert!(store.set_host_state(h[4], Standing::Draining).expect("drain"));
        let s = store.add_session(ann, b"k", 0, 10_000).expect("session");
        Pack::new(1, 2, &[h[0], h[1], h[2]]).commit(&store, ann, s, 5);
        Pack::new(2, 2, &[h[0], h[1], h[3]]).shard_size(5 * GIB).commit(&store, ann, s, 20);
        Pack::new(3, 1, &[h[0], h[3], h[4]]).commit(&store, ann, s, 10);
        Pack::new(4, 3, &[h[0], h[3], h[4], h[1]]).commit(&store, ann, s, 40);
        Pack::new(5, 1, &[h[1], h[2]]).commit(&store, ann, s, 30);
        set_shard_state(&store, 5, 1, "lost");
        Pack::new(6, 1, &[h[3]]).commit(&store, ann, s, 1);
        release_pack(&store, 6);

        let health = store.health(500).expect("health");
        // Pack 4 has fewer than k healthy shards, but a draining host still serves one: not lost.
        assert_eq!((health.packs_total, health.packs_full, health.packs_degraded, health.packs_lost), (5, 1, 4, 0));
        let degraded = store.degraded_packs(500, 10, &Default::default()).expect("degraded");
        assert_eq!(
            view(&degraded),
            [
                (pid(4), 192, 3, 1, 64, 2, vec![(0, h[0], "ok"), (1, h[3], "ok"), (2, h[4], "ok"), (3, h[1], "ok")]),
                (pid(3), 64, 1, 2, 64, 1, vec![(0, h[0], "ok"), (1, h[3], "ok"), (2, h[4], "ok")]),
                (pid(2), 10 * GIB, 2, 1, 5 * GIB, 2, vec![(0, h[0], "ok"), (1, h[1], "ok"), (2, h[3], "ok")]),
                (pid(5), 64, 1, 1, 64, 1, vec![(0, h[1], "ok"), (1, h[2], "lost")]),
            ],
            "short of k healthy first (pack 4 is readable: a draining host serves it), then by margin over k, then oldest"
        );
        let ids: Vec<PackId> = store.degraded_packs(500, 2, &Default::default()).expect("degraded").iter().map(|p| p.id).collect();
        assert_eq!(ids, [pid(4), pid(3)]);
        assert!(store.degraded_packs(500, 0, &Default::default()).expect("degraded").is_empty());
        // With host 4 counted as heard from, pack 2 is whole again.
        let health = store.health(100).expect("health");
        assert_eq!((health.packs_full, health.packs_degraded, health.packs_lost), (2, 3, 0));
    }

    fn crowded_packs_are_those_a_failure_domain_holds_too_much_of() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let acme = store.add_operator("acme", &[1; 32], false, 0).expect("add").expect("new");
        let solo = store.add_operator("solo «ü»", &[2; 32], true, 0).expect("add").expect("new");
        let terms = Terms::default();
        let join = |n: u8, operator| {
            let h = NewHost {
                secret_hash: &[n; 32],
                address: "http://127.0.0.1:1",
                zone: "z",
                capacity: 3 << 40,
                receipt_key: None,
                operator,
                terms: &terms,
            };
            store.join_host(&h, 0).expect("join")
        };
        let a: Vec<HostId> = (1..=3).map(|n| join(n, Some(acme))).collect();
        let b: Vec<HostId> = (4..=5).map(|n| join(n, Some(solo))).collect();
        let c: Vec<HostId> = (6..=7).map(|n| join(n, None)).collect();
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        // acme holds 2 of 2+2: crowded only when the rule allows one per domain.
        Pack::new(1, 2, &[a[0], a[1], c[0], c[1]]).commit(&store, ann, s, 10);
        // An independent operator's hosts are each their own domain.
        Pack::new(2, 2, &[b[0], b[1], c[0]]).commit(&store, ann, s, 1);
        // acme holds all of 1+2.
        Pack::new(3, 1, &a).commit(&store, ann, s, 5);
        Pack::new(4, 1, &a).shard_size(128).commit(&store, ann, s, 0);
        release_pack(&store, 4);

        let crowded = |f, limit| -> Vec<PackId> {
            store.crowded_packs(f, &[], limit, 0).expect("crowded").iter().map(|p| p.id).collect()
        };
        assert_eq!(crowded(1, 10), [pid(3)], "m / 1 = 2 per domain");
        assert_eq!(crowded(2, 10), [pid(3), pid(1)], "m / 2 = 1 per domain, oldest first");
        assert_eq!(crowded(2, 1), [pid(3)]);
        let past: Vec<PackId> = store.crowded_packs(2, &[], 10, 1).expect("crowded").iter().map(|p| p.id).collect();
        assert_eq!(past, [pid(1)], "the oldest passed over");
        assert!(crowded(0, 10).is_empty(), "no rule without domains");
        // Every host is in one zone: a pack whose zone holds more than its code's cap is
        // crowded too.
        let zoned = |caps: &[(u8, u8, usize)]| -> Vec<PackId> {
            store.crowded_packs(1, caps, 10, 0).expect("crowded").iter().map(|p| p.id).collect()
        };
        assert_eq!(zoned(&[(2, 2, 3)]), [pid(3), pid(1)], "4 shards of 2+2 in a zone that should hold 3");
        assert_eq!(zoned(&[(2, 2, 4)]), [pid(3)]);
        assert_eq!(zoned(&[(2, 1, 2), (2, 2, 4)]), [pid(2), pid(3)], "the cap is per code");
        let listed = store.crowded_packs(2, &[], 10, 0).expect("crowded");
        assert_eq!(
            view(&listed)[1],
            (pid(1), 128, 2, 2, 64, 4, vec![(0, a[0], "ok"), (1, a[1], "ok"), (2, c[0], "ok"), (3, c[1], "ok")])
        );
        assert_eq!(store.set_operator_independent("acme", true).expect("set"), Some(acme));
        assert!(crowded(2, 10).is_empty(), "acme's hosts are each their own domain now");
    }

    fn the_spread_summary_reads_kept_spreads_and_only_damaged_packs_shards() {
        let (_guard, store) = catalog();
        assert_eq!(store.spread_summary(1, &[], 0).expect("summary"), (None, 0, vec![]));
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h: Vec<HostId> = (1..=3).map(|n| host(&store, n, 0)).collect();
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        // 2+1 over three hosts: survives one loss; one shard lost, so it may be damaged.
        Pack::new(0xff, 2, &h).commit(&store, ann, s, 1);
        set_shard_state(&store, 0xff, 2, "lost");
        // 1+1 on two hosts, one shard surplus: damaged too.
        Pack::new(0x80, 1, &h[..2]).commit(&store, ann, s, 1);
        set_shard_state(&store, 0x80, 0, "surplus");
        // 1+1 with both shards on one host: survives nothing, and crowded at f = 1.
        Pack::new(0x20, 1, &[h[0], h[0]]).commit(&store, ann, s, 1);
        // Released packs do not count.
        Pack::new(0x7f, 1, &[h[1], h[1]]).commit(&store, ann, s, 1);
        release_pack(&store, 0x7f);
        let (lowest, crowded, mut damaged) = store.spread_summary(1, &[], 0).expect("summary");
        for (_, _, shards) in &mut damaged {
            shards.sort();
        }
        damaged.sort();
        assert_eq!((lowest, crowded), (Some(0), 1));
        assert_eq!(
            damaged,
            [(1, 1, vec![(h[0], false), (h[1], true)]), (2, 1, vec![(h[0], true), (h[1], true), (h[2], false)])]
        );
        assert_eq!(store.spread_summary(0, &[], 0).expect("summary").1, 0, "nothing is crowded at f = 0");
        let zoned = store.spread_summary(1, &[(1, 1, 1)], 0).expect("summary").1;
        assert_eq!(zoned, 2, "and the other 1+1, its two shards in one zone, when a zone should hold one");
        // Repair moves the doubled shard to its own host: spread and tolerance follow.
        let m = ShardMove { pack: &pid(0x20), index: 1, from: h[0], to: h[2], receipt: "r" };
        assert!(store.move_shard(m, 2, None).expect("move"));
        let (lowest, crowded, _) = store.spread_summary(1, &[], 0).expect("summary");
        assert_eq!((lowest, crowded), (Some(1), 0));
    }

    fn audit_targets_are_healthy_shards_on_hosts_audited_least() {
        let (_guard, store) = catalog();
        assert!(store.audit_targets(500, 10).expect("targets").is_empty());
        let ann = user(&store, 1, "ann", Role::User, None, None);
        // 3 is silent, 4 draining, 5 holds only a lost shard, 6 holds nothing.
        let h: Vec<HostId> = (1..=6).map(|n| host(&store, n, if n == 3 { 100 } else { 1000 })).collect();
        assert!(store.set_host_state(h[3], Standing::Draining).expect("drain"));
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        Pack::new(0x10, 1, &h[..5]).shard_size(5 * GIB).commit(&store, ann, s, 1);
        set_shard_state(&store, 0x10, 4, "lost");
        Pack::new(0x90, 1, &h[..1]).commit(&store, ann, s, 1);
        Pack::new(0x50, 1, &h[..1]).commit(&store, ann, s, 1);
        set_shard_state(&store, 0x50, 0, "lost");
        Pack::new(0xf0, 1, &h[..1]).commit(&store, ann, s, 1);
        release_pack(&store, 0xf0);
        let audit = |host, times| {
            for _ in 0..times {
                store.record_audit(host, &pid(0x10), 0, true, None, 0).expect("audit");
            }
        };
        audit(h[1], 1);
        audit(h[4], 2);
        audit(h[5], 2);

        let targets = store.audit_targets(500, 10).expect("targets");
        let hosts: Vec<HostId> = targets.iter().map(|t| t.0).collect();
        assert_eq!(hosts, [h[0], h[1]], "fewest audits first; only hosts with a healthy shard");
        assert_eq!(targets[1], (h[1], pid(0x10), 1, sid(0x10, 1), 5 * GIB));
        assert_eq!(store.audit_targets(500, 1).expect("targets").len(), 1);
        assert!(store.audit_targets(500, 0).expect("targets").is_empty());
        assert!(store.audit_targets(5000, 10).expect("targets").is_empty(), "nobody heard from since");
        // Host 1's shard is picked at random among its healthy ones.
        let mut picked = std::collections::BTreeSet::new();
        for _ in 0..64 {
            let t = store.audit_targets(500, 1).expect("targets").remove(0);
            assert_eq!(t.0, h[0]);
            assert!(
                [(pid(0x10), sid(0x10, 0), 5 * GIB), (pid(0x90), sid(0x90, 0), 64)].contains(&(t.1, t.3, t.4)),
                "{t:?}"
            );
            picked.insert(t.1);
        }
        assert_eq!(picked.len(), 2, "both healthy shards come up");
    }

    /// Attack (hostile host): the audited shard was the first after a random point in the
    /// host's shard ids, so a shard was picked as often as the gap before it is wide. A host
    /// knows its ids: dropping the tenth of its shards behind the narrowest gaps met about
    /// 0.5% of audits, not 10%. Every healthy shard must be as likely as any other.
    fn every_shard_of_a_host_is_as_likely_to_be_audited() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h = host(&store, 1, 1000);
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        // Pack n's shard id is [n; 32]: 0x81 sits 1/256 of the id space after 0x80.
        for n in [0x80, 0x81, 0x10] {
            Pack::new(n, 1, &[h]).commit(&store, ann, s, 1);
        }
        let mut picked = std::collections::BTreeMap::<u8, u32>::new();
        for _ in 0..600 {
            let t = store.audit_targets(500, 1).expect("targets").remove(0);
            *picked.entry(t.3.as_bytes()[0]).or_default() += 1;
        }
        assert!(picked.len() == 3 && picked.values().all(|&n| n >= 120), "{picked:?}");
    }

    fn surplus_is_marked_until_the_excess_is_covered() {
        let (_guard, store) = catalog();
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h = [host(&store, 1, 1000), host(&store, 2, 1000)];
        let s = store.add_session(ann, b"k", 0, 100).expect("session");
        for n in 1..=3 {
            Pack::new(n, 1, &h).shard_size(5 * GIB).commit(&store, ann, s, 1);
        }
        assert_eq!(store.mark_surplus(h[0], 6 * GIB, None, 2).expect("mark"), 2, "two 5 GiB shards cover 6 GiB");
        assert_eq!(store.mark_surplus(h[0], 6 * GIB, None, 3).expect("mark"), 0, "10 GiB already marked");
        assert_eq!(store.mark_surplus(h[0], 12 * GIB, None, 4).expect("mark"), 1);
        assert_eq!(store.mark_surplus(h[0], 100 * GIB, None, 5).expect("mark"), 0, "nothing left to mark");
        assert_eq!(store.mark_surplus(h[1], 0, None, 5).expect("mark"), 0);
        assert_eq!(store.mark_surplus(HostId(999), GIB, None, 5).expect("mark"), 0);
        // Surplus shards stay readable but stop counting as healthy.
        let health = store.health(500).expect("health");
        assert_eq!((health.packs_total, health.packs_degraded), (3, 3));
        let degraded = store.degraded_packs(500, 10, &Default::default()).expect("degraded");
        assert!(degraded.iter().all(|p| p.healthy == 1 && p.shards[0].3 == ShardState::Surplus && p.shards[1].3 == ShardState::Ok));
        assert_eq!(store.shard_of_user(ann, h[1], &sid(1, 1)).expect("shard"), Some((pid(1), 1, 5 * GIB)));
    }

    fn reconcile_moves_and_orphans_are_recorded_and_counted() {
        let (_guard, store) = catalog();
        assert_eq!(store.repair_totals().expect("totals"), (0, 0));
        assert!(store.orphans(10, u64::MAX).expect("orphans").is_empty());
        let ann = user(&store, 1, "ann", Role::User, None, None);
        let h = [host(&store, 1, 0), host(&store, 2, 0), host(&store, 3, 0)];
        let s = store.add_session(ann, b"k", 0, 1000).expect("session");
        Pack::new(1, 1, &h[..2]).shard_size(5 * GIB).commit(&store, ann, s, 10);
        Pack::new(2, 1, &h[..1]).commit(&store, ann, s, 50);
        let (x, y) = (sid(0xa0, 0), sid(0xb0, 0));

        // Host 1 lacks pack 1's shard (settled) and pack 2's (too new to judge); it holds x,
        // old enough to be an orphan, and y, which a put may still commit.
        let inventory = [(x, 1000), (y, 5)];
        let counts = |r: crate::store::Reconciled| (r.lost, r.orphaned, r.pending);
        assert_eq!(counts(store.reconcile(h[0], &inventory, 30, 60, 100).expect("reconcile")), (1, 1, vec![y]));
        let again = store.reconcile(h[0], &inventory, 30, 60, 101).expect("reconcile");
        assert_eq!(counts(again), (0, 0, vec![y]), "nothing new");
        assert_eq!(store.degraded_packs(0, 10, &Default::default()).expect("degraded")[0].shards[0].3, ShardState::Lost);
        assert_eq!(store.orphans(10, u64::MAX).expect("orphans"), [(h[0], x)]);
        // A shard the catalog places on the host is no orphan, however old.
        assert_eq!(counts(store.reconcile(h[1], &[(sid(1, 1), 1000)], 30, 60, 102).expect("reconcile")), (0, 0, vec![]));

        // Repair moves pack 1's shards; the copies left behind become orphans.
        let moved = |index, from, to| {
            let m = ShardMove { pack: &pid(1), index, from, to, receipt: "r'ü" };
            store.move_shard(m, 110, None).expect("move")
        };
        assert!(moved(0, h[0], h[2]));
        assert_eq!(store.repair_totals().expect("totals"), (1, 5 * GIB));
        assert!(!moved(0, h[0], h[2]), "no longer on host 1");
        assert!(moved(1, h[1], h[0]));
        assert_eq!(store.repair_totals().expect("totals"), (2, 10 * GIB), "past 32 bits");
        let mut orphans = store.orphans(10, u64::MAX).expect("orphans");
        orphans.sort();
        assert_eq!(orphans, [(h[0], sid(1, 0)), (h[0], x), (h[1], sid(1, 1))]);
        // The copies moved at 110 wait for a catalog backup taken after that second.
        assert_eq!(store.orphans(10, 110).expect("orphans"), [(h[0], x)], "queued at 100, backed up by 110");
        assert_eq!(store.orphans(10, 111).expect("orphans").len(), 3);
        // Shared out between hosts: host 1's two do not crowd out host 2's one.
        let two = store.orphans(2, u64::MAX).expect("orphans");
        assert!(two.len() == 2 && two.iter().any(|o| o.0 == h[1]), "{two:?}");
        // Moved back onto host 1 while its old copy is queued for deletion: refused (the
        // deleter may hold that copy in its list, and would delete the new one), and host 1
        // is not offered to repair; once the copy is deleted, shard 0 goes back.
        assert_eq!(store.hosts_holding(&pid(1), &[sid(1, 0)]).expect("holding"), [h[0]]);
        let back = ShardMove { pack: &pid(1), index: 0, from: h[2], to: h[0], receipt: "r" };
        assert!(matches!(store.move_shard(back, 110, None), Err(StoreError::ShardLeaving(t)) if t == h[0]));
        store.orphan_deleted(h[0], &sid(1, 0), None, 115).expect("deleted");
        assert!(store.hosts_holding(&pid(1), &[sid(1, 0)]).expect("holding").is_empty());
        assert!(moved(0, h[2], h[0]));
        let mut orphans = store.orphans(10, u64::MAX).expect("orphans");
        orphans.sort();
        assert_eq!(orphans, [(h[0], x), (h[1], sid(1, 1)), (h[2], sid(1, 0))]);
        assert_eq!(store.repair_totals().expect("totals"), (3, 15 * GIB));

        store.orphan_deleted(h[0], &x, None, 120).expect("deleted");
        store.orphan_deleted(h[0], &y, None, 120).expect("not an orphan: nothing to do");
        let mut orphans = store.orphans(10, u64::MAX).expect("orphans");
        orphans.sort();
        assert_eq!(orphans, [(h[1], sid(1, 1)), (h[2], sid(1, 0))]);
    }

    fn a_placed_pack_uses_its_placements_only_when_recorded() {
        let (_dir, store) = catalog();
        let alice = user(&store, 1, "alice", Role::User, None, None);
        let h: Vec<HostId> = (1..=3).map(|n| host(&store, n, 0)).collect();
        let session = store.open_session(alice, alice, b"k", 0, 1000).expect("session");
        let placements: Vec<Reservation> = (0..3u8)
            .map(|i| Reservation {
                host: h[usize::from(i)],
                shard: sid(1, i),
                caller: alice,
                owner: alice,
                bytes: 64,
                grant: [i; 32],
                code: (2, 1),
                per_domain: 1,
                expires: 500,
                // One of them placed under a placement policy.
                narrowed: i == 0,
            })
            .collect();
        store.reserve(alice, alice, 10, |_| Ok::<_, ()>((placements.clone(), ()))).expect("place");
        let shards: Vec<StoredShard> = placements
            .iter()
            .enumerate()
            .map(|(i, r)| StoredShard {
                index: i as u8,
                shard: r.shard,
                host: r.host,
                receipt: SignedReceipt(format!("r{i}")),
            })
            .collect();
        let pack = |session| NewPack {
            id: pid(1),
            user: alice,
            session,
            size: 128,
            k: 2,
            m: 1,
            shard_size: 64,
            shards: &shards,
            chunks: &[],
            relocate: false,
        };
        let reserved = |store: &Store| store.reserved_by_host(20).expect("reserved").values().sum::<u64>();

        // Refused by the check: nothing recorded, the placements stay.
        let refused = store.commit_placed_pack(alice, &pack(session), |_| Err("no"), 20);
        assert!(matches!(refused, Err(ReserveError::Refused("no"))), "{refused:?}");
        assert_eq!(reserved(&store), 192);
        // Accepted by the check but failed by the catalog (an unknown session): the same.
        let failed = store.commit_placed_pack(alice, &pack(session + 99), |_| Ok::<_, ()>(()), 20);
        assert!(matches!(failed, Err(ReserveError::Store(StoreError::BadReference))), "{failed:?}");
        assert_eq!(reserved(&store), 192);
        assert!(!store.pack_exists(&pid(1)).expect("exists"));
        // Another account's commit finds none of them.
        let bob = user(&store, 2, "bob", Role::User, None, None);
        let mut seen = Vec::new();
        let look = |r: &[Option<Reservation>]| {
            seen = r.to_vec();
            Err("not placed")
        };
        let theirs = store.commit_placed_pack(bob, &pack(session), look, 20);
        assert!(matches!(theirs, Err(ReserveError::Refused("not placed"))));
        assert_eq!(seen, vec![None, None, None]);

        // Read as a commit checks its receipts against them, and left in place; another
        // account's, or one that lapsed, is none.
        let keys: Vec<(HostId, ShardId)> = placements.iter().map(|r| (r.host, r.shard)).collect();
        let placed: Vec<Option<Reservation>> = placements.iter().cloned().map(Some).collect();
        assert_eq!(store.placements_of(alice, &keys, 20).expect("read"), placed);
        assert_eq!(store.placements_of(bob, &keys, 20).expect("read"), vec![None, None, None]);
        assert_eq!(store.placements_of(alice, &keys, 500).expect("read"), vec![None, None, None]);
        assert_eq!(reserved(&store), 192);

        // Recorded: the check saw each placement, by shard, and they are used up.
        let mut seen = Vec::new();
        let look = |r: &[Option<Reservation>]| {
            seen = r.to_vec();
            Ok::<_, ()>(())
        };
        store.commit_placed_pack(alice, &pack(session), look, 20).expect("recorded");
        assert_eq!(seen, placed);
        assert_eq!(reserved(&store), 0);
        assert_eq!(store.placements_of(alice, &keys, 20).expect("read"), vec![None, None, None]);
        assert!(store.pack_exists(&pid(1)).expect("exists"));
        // A retried commit of a recorded pack succeeds without looking at placements.
        store.commit_placed_pack(alice, &pack(session), |_| Err("looked"), 30).expect("a retried commit");
        // Its three shards share one zone, but a placement policy chose that: not re-spread.
        assert!(store.crowded_packs(1, &[(2, 1, 1)], 10, 0).expect("crowded").is_empty());
        let degraded = store.degraded_packs(1_000_000, 10, &Default::default()).expect("degraded");
        assert!(!degraded.is_empty() && degraded.iter().all(|p| p.narrowed), "{degraded:?}");
    }
}
