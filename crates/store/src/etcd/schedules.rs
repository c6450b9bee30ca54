//! Schedules: `schedules/<account>/<group>/<name>` holds each record. A fire rewrites its schedule only
//! if no one else did since it was read, with the event it queues, so a schedule fires once per time in a
//! cluster whichever node fires it.

use stoke_core::AccountId;

use super::{absent, delete, present, put, unchanged, EtcdStore, Read};
use crate::{EventRecord, Result, ScheduleRecord, ScheduleStore, StoreError};

impl EtcdStore {
    fn schedule_key(&self, account: &AccountId, group: &str, name: &str) -> String {
        self.keys.key(&["schedules", account.as_str(), group, name])
    }
}

impl ScheduleStore for EtcdStore {
    fn insert_schedule(&self, s: &ScheduleRecord) -> Result<()> {
        let key = self.schedule_key(&s.account, &s.group, &s.name);
        if self.commit(vec![absent(&key)], vec![put(&key, s)?])? {
            Ok(())
        } else {
            Err(StoreError::Conflict(format!("schedule {}", s.name)))
        }
    }

    fn get_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<Option<ScheduleRecord>> {
        Ok(self.get(&self.schedule_key(account, group, name))?.map(|r: Read<ScheduleRecord>| r.value))
    }

    fn list_schedules(
        &self,
        account: &AccountId,
        group: Option<&str>,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleRecord>> {
        let (all, _) = self.list::<ScheduleRecord>(&self.keys.under(&["schedules", account.as_str()]))?;
        let mut out: Vec<ScheduleRecord> = all
            .into_iter()
            .map(|r| r.value)
            .filter(|s| group.is_none_or(|g| s.group == g))
            .filter(|s| s.name.starts_with(prefix) && after.is_none_or(|a| s.name.as_str() > a))
            .collect();
        out.sort_by(|a, b| (&a.name, &a.group).cmp(&(&b.name, &b.group)));
        out.truncate(limit);
        Ok(out)
    }

    fn pending_schedules(&self) -> Result<Vec<ScheduleRecord>> {
        let (all, _) = self.list::<ScheduleRecord>(&self.keys.under(&["schedules"]))?;
        let mut out: Vec<ScheduleRecord> =
            all.into_iter().map(|r| r.value).filter(|s| s.next_fire_ms.is_some()).collect();
        out.sort_by_key(|s| s.next_fire_ms);
        Ok(out)
    }

    fn update_schedule(&self, s: &ScheduleRecord, expected_revision: u64, fire: Option<&EventRecord>) -> Result<()> {
        let key = self.schedule_key(&s.account, &s.group, &s.name);
        let Some(stored) = self.get::<ScheduleRecord>(&key)? else {
            return Err(StoreError::NotFound(format!("schedule {}", s.name)));
        };
        if stored.value.revision != expected_revision {
            return Err(StoreError::RevisionMismatch(format!("schedule {}", s.name)));
        }
        let mut when = vec![unchanged(&key, stored.mod_revision)];
        let mut ops = vec![put(&key, s)?];
        if let Some(e) = fire {
            let event_key = self.keys.key(&["events", &e.id]);
            when.push(absent(&event_key));
            ops.push(put(&event_key, e)?);
            ops.extend(self.event_index_ops(e)?);
        }
        if self.commit(when, ops)? {
            return Ok(());
        }
        Err(StoreError::RevisionMismatch(format!("schedule {}", s.name)))
    }

    fn delete_schedule(&self, account: &AccountId, group: &str, name: &str) -> Result<bool> {
        let key = self.schedule_key(account, group, name);
        self.commit(vec![present(&key)], vec![delete(&key)])
    }
}
