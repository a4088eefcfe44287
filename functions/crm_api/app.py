"""crm_api: the CRM REST API (companies, contacts, pipelines, deals, activities, tasks, imports)
(HTTP), and the import-jobs queue (SQS): big files uploaded to S3, imported as jobs."""

from okyaku.coldstart import built_once

with built_once():
    from okyaku.crm.api import create_crm_app
    from okyaku.crm.import_uploads import ImportUploads
    from okyaku.entry import function_handler
    from okyaku.runtime import Runtime

    import_uploads = ImportUploads(Runtime())
    app = create_crm_app(import_uploads.runtime, import_uploads=import_uploads)
    handler = function_handler(name="crm_api", http=app, on_record=import_uploads.run_record)
