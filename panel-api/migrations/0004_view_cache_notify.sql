-- Every panel-api process keeps the client API's server views it has read
-- (`GET /api/client/servers/{server}`, src/authcache.rs) in memory. These statement
-- triggers tell all of them, through NOTIFY `d` on the key cache's channel
-- `ferrodactyl_auth`, that a table such a view reads has changed, in the writing
-- transaction itself (so the notice is sent when, and only if, it commits; one
-- notice per transaction however many statements), whoever wrote it. A process
-- drops every view on the notice; it serves views only while all nine triggers
-- are enabled. These tables are written rarely next to how often a view is read.
CREATE FUNCTION ferrodactyl_views_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ferrodactyl_auth', 'd');
    RETURN NULL;
END
$$;

CREATE TRIGGER servers_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON servers
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER nodes_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON nodes
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER locations_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON locations
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER eggs_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON eggs
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER allocations_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON allocations
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER egg_variables_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON egg_variables
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER server_variables_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON server_variables
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER subusers_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON subusers
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
CREATE TRIGGER server_transfers_view_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON server_transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ferrodactyl_views_changed();
