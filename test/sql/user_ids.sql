-- User ids are opaque: spaces, quotes, unicode, ';', ':' and newlines are
-- stored and returned exactly.
SET client_min_messages = warning;

CREATE TEMP TABLE ids(id text);
INSERT INTO ids VALUES
  ('with space'), ('O''Brien "quoted"'), ('ユーザー🙂'), ('a;DROP TABLE credits.ledger;--'),
  ('colon:user:1'), (E'new\nline'), (E'tab\there'), ('  padded  '), ('\\backslash');

SELECT id, (SELECT balance FROM credits.credit_init(id, 10)) FROM ids ORDER BY id;
SELECT id, (SELECT balance FROM credits.credit_deduct(id, 3, 'chat_message')) FROM ids ORDER BY id;
SELECT i.id = a.user_id AS exact, credits.credit_balance(i.id)
  FROM ids i JOIN credits.accounts a ON a.user_id = i.id ORDER BY i.id;
SELECT count(*) FROM ids i JOIN credits.ledger l ON l.user_id = i.id;
-- similar-looking ids are different accounts
SELECT credits.credit_balance('with  space') IS NULL AS distinct_account;
SELECT count(*) FROM credits.ledger WHERE user_id = 'ledger';
