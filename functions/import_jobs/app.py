"""import_jobs: runs the CSV imports uploaded to S3 (POST /api/v1/imports/uploads, then .../complete),
one per message of the import-jobs queue, with the time and memory an HTTP function does not have."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.crm.import_uploads import ImportUploads
    from okyaku.entry import function_handler
    from okyaku.runtime import Runtime

    import_uploads = ImportUploads(Runtime())
    handler = function_handler(name="import_jobs", on_record=import_uploads.run_record)
