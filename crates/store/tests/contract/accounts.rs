//! Accounts and their keys.

use stoke_core::AccountId;
use stoke_store::{AccountKeys, AccountRecord, Store};

use crate::fixtures::{account_record, expect_conflict};

/// Accounts read back with their keys, listed oldest first (`created_ms`), then by id.
pub fn accounts_read_back_oldest_first(s: &dyn Store) {
    assert!(s.list_accounts().unwrap().is_empty(), "a new store has no account");
    assert!(s.list_account_keys().unwrap().is_empty());
    let at = |n: u64, created_ms: i64, admin: bool| {
        let (mut record, keys) = account_record(n);
        (record.created_ms, record.is_admin) = (created_ms, admin);
        (record, keys)
    };
    let (late, late_keys) = at(102, 30, true);
    let (early, early_keys) = at(103, 10, false);
    // Created at the same time as `late`, and after it, but with the lower id: it comes first.
    let (tie, tie_keys) = at(101, 30, false);
    for (record, keys) in [(&late, &late_keys), (&early, &early_keys), (&tie, &tie_keys)] {
        s.create_account(record, keys).unwrap();
    }
    assert_eq!(s.get_account(&late.id).unwrap(), Some(late.clone()), "every field reads back");
    assert_eq!(s.get_account(&AccountId::from_number(104)).unwrap(), None);
    assert_eq!(s.list_accounts().unwrap(), [early.clone(), tie.clone(), late.clone()]);
    assert_eq!(s.list_account_keys().unwrap(), [(early, early_keys), (tie, tie_keys), (late, late_keys)]);
}

/// The id, the name, the API key hash and the access key id are each unique: a second account reusing one
/// is a `Conflict` and writes nothing.
pub fn duplicate_accounts_conflict(s: &dyn Store) {
    let (first, first_keys) = account_record(111);
    s.create_account(&first, &first_keys).unwrap();
    let (other, other_keys) = account_record(112);

    let same_id = AccountRecord { id: first.id.clone(), ..other.clone() };
    expect_conflict(s.create_account(&same_id, &other_keys));
    let same_name = AccountRecord { name: first.name.clone(), ..other.clone() };
    expect_conflict(s.create_account(&same_name, &other_keys));
    let same_api_key = AccountKeys { api_key_sha256: first_keys.api_key_sha256.clone(), ..other_keys.clone() };
    expect_conflict(s.create_account(&other, &same_api_key));
    let same_access_key = AccountKeys { access_key_id: first_keys.access_key_id.clone(), ..other_keys.clone() };
    expect_conflict(s.create_account(&other, &same_access_key));

    assert_eq!(s.list_account_keys().unwrap(), [(first.clone(), first_keys)], "refused accounts wrote nothing");
    assert_eq!(s.get_account(&other.id).unwrap(), None);
    // The secret is not unique.
    let same_secret = AccountKeys { secret_access_key: "secret111".into(), ..other_keys };
    s.create_account(&other, &same_secret).unwrap();
    assert_eq!(s.list_accounts().unwrap(), [first, other]);
}

contract!(accounts_read_back_oldest_first, duplicate_accounts_conflict);
