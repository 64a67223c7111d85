"""Helpers of the smtpgw end-to-end tests, one module per noun (the way
FRR's topotests keep lib/); tests/e2e/conftest.py holds the fixtures and
re-exports every name here, so a test file imports from conftest.

  topology        paths, the testbed's addresses, Flow / flow(), tokens, ports
  logs            the gateway log: key=value fields, quoting, session lines
  mail            messages as sent (dot-stuffing) and as delivered (trace headers)
  netns           run a block of code inside a testbed namespace (setns)
  smtp_client     SmtpConn, a raw SMTP client made in a namespace
  scripted_server ScriptedServer and scripted_smtp(), an SMTP server a test scripts
  x509            openssl s_client / x509 / verify wrappers
  testbed         Testbed (the tests/testbed/testbed driver), MxSession
  gateway_config  edits of the gateway's smtpgw.conf, applied by a restart
  scanners        the testbed's clamd / rspamd, test messages for them, scanclient
                  (imported by the test_scanner_* files themselves)
"""
