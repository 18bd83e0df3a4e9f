"""The review console: a web page on the proxy (`/console`) where a safety team tries
messages and sees why, reads the policy in force, reviews the audit log and opens benchmark
reports. Pages are rendered on the server; assets ship in this package.

    from oyster.serve.console.app import ConsoleConfig, mount_console
    from oyster.serve.console.auditquery import SqliteAuditQuery

    mount_console(app, ConsoleConfig(engine=engine, responder=responder,
                                     audit=SqliteAuditQuery(path), keys=keys))
"""
