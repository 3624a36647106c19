-- A table as a tutorial makes it: a SERIAL key, NOT NULL columns, a few rows.
CREATE TABLE books (
  id SERIAL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  description TEXT NOT NULL,
  author VARCHAR(255),
  publication_year INT
);

INSERT INTO books (name, description, author, publication_year) VALUES
  ('Dune',
   'On the desert planet Arrakis, a noble family is betrayed and their son Paul joins the Fremen of the deep '
   'desert, who ride giant sandworms and guard the spice melange.',
   'Frank Herbert', 1965),
  ('Pride and Prejudice',
   'Elizabeth Bennet and the proud Mr. Darcy misjudge each other at balls and country houses in Regency England '
   'until marriage proposals and family scandal change their minds.',
   'Jane Austen', 1813),
  ('The Hobbit',
   'Bilbo Baggins, a comfortable hobbit, is swept off by a wizard and thirteen dwarves on a quest to take back a '
   'mountain of treasure guarded by the dragon Smaug.',
   'J. R. R. Tolkien', 1937);
