"""When configured sources run by themselves: `cron` (the next fire time of a cron schedule
in a time zone, or of a fixed interval) and `scheduler` (a thread that fires due sources
through the source runner, catches up missed ticks once, and watches folders)."""
