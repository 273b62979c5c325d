"""Versioned schema migrations, applied in order at start (PRAGMA user_version).

Add a new entry at the end; never edit one that has shipped. Keep the SQL portable (no
SQLite-only types) so a PostgreSQL backend can follow.
"""

from __future__ import annotations


class SchemaTooNew(Exception):
    """The database was made or migrated by a newer Veivis than this one: running on it
    could lose or misread data, so this Veivis refuses to open it (a downgrade is done by
    restoring the backup taken before the upgrade)."""

    def __init__(self, path: str, found: int, known: int) -> None:
        super().__init__(
            f"the database {path} has schema version {found}, newer than this Veivis knows "
            f"({known}); it was used by a newer version. Install that version again, or "
            f"restore the backup taken before the upgrade.")
        self.path, self.found, self.known = path, found, known

    def norwegian(self) -> str:
        return (f"databasen {self.path} har skjemaversjon {self.found}, nyere enn denne "
                f"versjonen av Veivis kjenner ({self.known}): den er brukt av en nyere "
                f"Veivis. Installer den versjonen igjen, eller legg tilbake sikkerhetskopien "
                f"fra før oppgraderingen. Ingenting er endret.")

MIGRATIONS: list[str] = [
    # 1: the walking skeleton
    """
    CREATE TABLE offices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE
    );
    CREATE TABLE veiledere (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        work_phone TEXT UNIQUE,
        office_id INTEGER REFERENCES offices(id)
    );
    -- AUTOINCREMENT: an erased user's id is never given to someone else
    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        phone TEXT UNIQUE,
        telegram_chat_id TEXT UNIQUE,
        channel TEXT NOT NULL,
        first_name TEXT,
        last_name TEXT,
        language TEXT NOT NULL DEFAULT 'nb',
        veileder_id INTEGER REFERENCES veiledere(id) ON DELETE SET NULL,
        stopped INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL
    );
    CREATE TABLE meetings (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        veileder_id INTEGER REFERENCES veiledere(id),
        starts_at TEXT NOT NULL,
        place TEXT,
        kind TEXT NOT NULL DEFAULT 'followup',
        status TEXT NOT NULL DEFAULT 'planned'
    );
    CREATE INDEX meetings_user ON meetings(user_id, starts_at);
    CREATE TABLE conversations (
        user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
        state TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE inbound (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        channel TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        text TEXT,
        received_at TEXT NOT NULL,
        UNIQUE (channel, provider_id)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        user_id INTEGER REFERENCES users(id) ON DELETE SET NULL,
        channel TEXT NOT NULL,
        address TEXT NOT NULL,
        text TEXT NOT NULL,
        choices TEXT,
        numbered INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        due_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        tries INTEGER NOT NULL DEFAULT 0,
        provider_id TEXT,
        last_error TEXT,
        sent_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(status, channel, due_at);
    CREATE TABLE answers (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        flow TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        saved_at TEXT NOT NULL
    );
    CREATE INDEX answers_user ON answers(user_id);
    -- Anonymous answers: no user, no exact time (ISO week only), random ids.
    CREATE TABLE anonymous_answers (
        id INTEGER PRIMARY KEY,
        flow TEXT NOT NULL,
        question TEXT NOT NULL,
        value TEXT NOT NULL,
        week TEXT NOT NULL,
        office TEXT
    );
    """,
    # 2: consent from the welcome flow (NULL: not asked yet)
    """
    ALTER TABLE users ADD COLUMN consent INTEGER;
    """,
    # 3: meetings and what is scheduled around them. The database is the source of truth:
    # a scheduled row is a flow start (prep, reminder, survey, notice) with a due time.
    """
    ALTER TABLE meetings ADD COLUMN created_at TEXT;
    ALTER TABLE meetings ADD COLUMN updated_at TEXT;
    ALTER TABLE answers ADD COLUMN meeting_id INTEGER REFERENCES meetings(id) ON DELETE CASCADE;
    ALTER TABLE users ADD COLUMN discreet INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE offices ADD COLUMN address TEXT;
    ALTER TABLE offices ADD COLUMN opening_hours TEXT;
    ALTER TABLE offices ADD COLUMN backup_phone TEXT;
    CREATE TABLE scheduled (
        id INTEGER PRIMARY KEY,
        meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
        slot TEXT NOT NULL,
        kind TEXT NOT NULL,
        flow TEXT,
        due_at TEXT NOT NULL,
        not_after TEXT,
        status TEXT NOT NULL DEFAULT 'pending',
        handled_at TEXT,
        UNIQUE (meeting_id, slot)
    );
    CREATE INDEX scheduled_due ON scheduled(status, due_at);
    """,
    # 4: a veileder's working hours and absence (with who covers), for routing
    """
    ALTER TABLE veiledere ADD COLUMN working_hours TEXT;
    ALTER TABLE veiledere ADD COLUMN away_until TEXT;
    ALTER TABLE veiledere ADD COLUMN backup_phone TEXT;
    """,
    # 5: going live. The sender claims a row ('sending') before the provider call and records
    # the provider's id after it; `delivery` is the provider's own report (Twilio callbacks).
    # Telegram invites keep only a hash of the code.
    """
    ALTER TABLE outbox ADD COLUMN delivery TEXT;
    ALTER TABLE outbox ADD COLUMN error_code TEXT;
    CREATE INDEX outbox_provider ON outbox(provider_id);
    CREATE INDEX outbox_heads ON outbox(channel, address, id)
        WHERE status IN ('pending', 'sending');
    CREATE TABLE invites (
        code_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        created_at TEXT NOT NULL,
        expires_at TEXT NOT NULL,
        used_at TEXT
    );
    """,
    # 6: threads between a young person and their veileder's work phone. Metadata only (who,
    # when, status): never the text, which travels once through the outbox.
    """
    CREATE TABLE threads (
        id INTEGER PRIMARY KEY,
        code INTEGER NOT NULL,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        veileder_id INTEGER NOT NULL REFERENCES veiledere(id) ON DELETE CASCADE,
        status TEXT NOT NULL DEFAULT 'open',
        opened_at TEXT NOT NULL,
        last_at TEXT NOT NULL,
        closed_at TEXT,
        UNIQUE (veileder_id, code)
    );
    CREATE INDEX threads_user ON threads(user_id, status);
    CREATE TABLE thread_events (
        id INTEGER PRIMARY KEY,
        thread_id INTEGER NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
        at TEXT NOT NULL,
        direction TEXT NOT NULL
    );
    CREATE INDEX thread_events_thread ON thread_events(thread_id, at);
    """,
    # 7: «Du sa – vi gjorde»: who said yes to hearing back (a yes/no in the feedback flow, no
    # time, nothing of what they wrote); the 14-day digests made, so a missed one runs once.
    """
    ALTER TABLE users ADD COLUMN hear_back INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE digests (
        period TEXT PRIMARY KEY,
        made_at TEXT NOT NULL
    );
    """,
    # 8: anonymous means anonymous against someone holding the database files.
    # - anonymous_pool: answers wait here, sealed (AES-GCM, with a key kept outside the
    #   database), until at least 5 people have answered the same question; then they move
    #   to anonymous_answers together, shuffled, stamped with the week they were released.
    # - seen_keys: a keyed hash of (channel, provider id) for messages typed inside an
    #   anonymous flow (dedupe without a user or an exact time); WITHOUT ROWID, so rows lie
    #   in the order of their hash, not of their arrival.
    # - outbox.about_user: a message about a young person sent to someone else (a forward to
    #   the veileder, a crisis notice, a veileder's confirmation), so SLETT and export-user
    #   find it. outbox.forget: the address and text are wiped (trigger) once the row is
    #   sent or has failed for good (the answer to SLETT must not keep its number).
    # - anonymous_answers rebuilt in random order (rows written before this release lay in
    #   arrival order in the file).
    """
    CREATE TABLE anonymous_pool (
        id INTEGER PRIMARY KEY,
        sealed BLOB NOT NULL
    );
    CREATE TABLE seen_keys (
        key BLOB PRIMARY KEY,
        day TEXT NOT NULL
    ) WITHOUT ROWID;
    ALTER TABLE outbox ADD COLUMN about_user INTEGER REFERENCES users(id) ON DELETE SET NULL;
    ALTER TABLE outbox ADD COLUMN forget INTEGER NOT NULL DEFAULT 0;
    CREATE TRIGGER outbox_forget AFTER UPDATE OF status ON outbox
        WHEN NEW.forget = 1 AND NEW.status IN ('sent', 'failed')
        BEGIN UPDATE outbox SET address = '', text = '' WHERE id = NEW.id; END;
    CREATE INDEX outbox_about ON outbox(about_user) WHERE about_user IS NOT NULL;
    CREATE INDEX outbox_user ON outbox(user_id) WHERE user_id IS NOT NULL;
    CREATE INDEX inbound_user ON inbound(user_id) WHERE user_id IS NOT NULL;
    CREATE TABLE anonymous_answers_new (
        id INTEGER PRIMARY KEY,
        flow TEXT NOT NULL,
        question TEXT NOT NULL,
        value TEXT NOT NULL,
        week TEXT NOT NULL,
        office TEXT
    );
    INSERT INTO anonymous_answers_new (id, flow, question, value, week, office)
        SELECT id, flow, question, value, week, office FROM anonymous_answers ORDER BY random();
    DROP TABLE anonymous_answers;
    ALTER TABLE anonymous_answers_new RENAME TO anonymous_answers;
    """,
    # 9: exactly once when it matters. A row is claimed only when it is handed to the
    # provider, at `attempt_at`; a send in doubt (no answer in time, a crash mid-request) is
    # 'unsure' until the provider is asked whether it has the message. Unsure rows stay at
    # the head of their address, so a person's later messages wait behind them.
    """
    ALTER TABLE outbox ADD COLUMN attempt_at TEXT;
    DROP INDEX outbox_heads;
    CREATE INDEX outbox_heads ON outbox(channel, address, id)
        WHERE status IN ('pending', 'sending', 'unsure');
    """,
    # 10: costs that do not grow with the tables. The daily purge finds old rows by their
    # time (no full scans under the write lock); deleting a meeting finds its answers
    # (ON DELETE CASCADE) without scanning them all; the purge's quiet-user check finds a
    # person's latest conversation step, and SLETT their invites, by index.
    """
    CREATE INDEX inbound_received ON inbound(received_at);
    CREATE INDEX outbox_created ON outbox(created_at) WHERE status != 'pending';
    CREATE INDEX answers_saved ON answers(saved_at);
    CREATE INDEX answers_meeting ON answers(meeting_id) WHERE meeting_id IS NOT NULL;
    CREATE INDEX scheduled_handled ON scheduled(handled_at) WHERE status != 'pending';
    CREATE INDEX meetings_starts ON meetings(starts_at);
    CREATE INDEX threads_last ON threads(last_at);
    CREATE INDEX seen_keys_day ON seen_keys(day);
    CREATE INDEX users_created ON users(created_at);
    CREATE INDEX invites_user ON invites(user_id);
    """,
    # 11: limits: messages queued per channel today (the daily budget) and to one person in
    # the last minute and day, counted by index ranges
    """
    CREATE INDEX outbox_channel_created ON outbox(channel, created_at);
    DROP INDEX outbox_user;
    CREATE INDEX outbox_user ON outbox(user_id, created_at) WHERE user_id IS NOT NULL;
    """,
    # 12: several instances on one database (PostgreSQL): which instance claimed a row, so
    # the others take it over at once when that instance is gone, not only after the lease;
    # and the next free send slot per channel, so the rate limit holds for all of them
    # together (seconds since the epoch, on the database server's clock).
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    CREATE TABLE rate_slots (
        channel TEXT PRIMARY KEY,
        next_at REAL NOT NULL
    );
    """,
    # 13: which seal key the pool and the keyed hashes were made with (a keyed hash of a
    # constant, never the key): a process with another key is refused at start, so one
    # instance with a wrong or new key cannot split the pool or the dedupe hashes
    """
    CREATE TABLE seal_check (
        id INTEGER PRIMARY KEY,
        mac BLOB NOT NULL
    );
    """,
]
