-- A received delivery's request headers, kept with its body so that triggers can read them
-- (`headers` in their expressions): a JSON object of lowercase names and their values, without the
-- headers that authenticate the delivery (the server drops them before storing), capped in size.
-- NULL when there were none to keep, and for deliveries received before this column existed: both
-- read as no headers. Let go with the body once the delivery is applied.
ALTER TABLE inbox ADD COLUMN headers TEXT CHECK (headers IS NULL OR json_type(headers) = 'object');
