-- A deleted record's search entry goes with it, whoever deletes it (store/pg_search.py).
-- Search trusts every entry of a row below the watermark, so an entry left behind by a
-- DELETE that does not go through the store (an operator's SQL, a script) would be
-- counted by every search of its collection. One statement-level trigger, in the
-- database, covers every path; it first waits for a running indexer step, which may have
-- read the row before the delete and would add its entry after (a shared lock on the
-- indexer's advisory key: deletes do not wait for each other).
-- Entries orphaned before this migration (by such deletes) are removed here.

CREATE FUNCTION batchops_forget_search() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('batchops:search-indexer', 0));
    DELETE FROM record_search s USING gone g
    WHERE s.tenant = g.tenant AND s.collection = g.collection AND s.id = g.id;
    RETURN NULL;
END
$$;

CREATE TRIGGER records_forget_search AFTER DELETE ON records
    REFERENCING OLD TABLE AS gone
    FOR EACH STATEMENT EXECUTE FUNCTION batchops_forget_search();

CREATE FUNCTION batchops_forget_all_search() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(hashtextextended('batchops:search-indexer', 0));
    TRUNCATE record_search;
    RETURN NULL;
END
$$;

CREATE TRIGGER records_forget_all_search AFTER TRUNCATE ON records
    FOR EACH STATEMENT EXECUTE FUNCTION batchops_forget_all_search();

DELETE FROM record_search s
WHERE NOT EXISTS (
    SELECT 1 FROM records r
    WHERE r.tenant = s.tenant AND r.collection = s.collection AND r.id = s.id
);
