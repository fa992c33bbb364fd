/*
 * loop.pml: the one loop (supervisor/) with its events: a job's exit
 * from the reaper, its timeout timer, API signal requests, a service's run
 * as a unit (its main process and a leftover it forked), its restart, and
 * the shutdown. See model/README.md for the mapping and the bounds.
 *
 * The reaper is abstracted to what model/reaper.pml proves of it: a
 * handle's process is signalled only while live, and its exit reaches the
 * loop once, as an event on a channel, some time after the reap.
 *
 * Variants that must fail:
 *   RAW_SIGNAL           the timeout, a signal request or the shutdown
 *                        signals the job without its handle's liveness
 *                        (the first tend's time.AfterFunc kill by pid)
 *   RESTART_ON_MAIN_EXIT the service restarts when its main process
 *                        exits, not when its unit has ended (invariant 11)
 *   START_IN_SHUTDOWN    a queued job starts after the shutdown began
 *   IGNORE_API_STOP      a service stopped from the API restarts at its
 *                        unit's end, as its restart policy would have it
 */

#ifndef NJOBS
#define NJOBS 2
#endif
#ifndef NRUNS
#define NRUNS 2
#endif

mtype = { QUEUED, RUNNING, EXITED };
mtype = { R_NONE, R_EXITED, R_TIMEOUT, R_SHUTDOWN };

/* jobs: the loop's records, and the processes under the reaper */
mtype jstate[NJOBS] = QUEUED;
mtype jreason[NJOBS] = R_NONE;
bool  jalive[NJOBS];      /* the process: alive or an unreaped zombie */
bool  jreaped[NJOBS];     /* the handle's reaped flag */
byte  jends[NJOBS];       /* how often the record was finished */
bool  jtimer[NJOBS];      /* a timeout timer is armed */
byte  running = 0;
#define MAXRUN 1

/* the service: runs, each a unit of its main and one leftover */
byte  runno = 0;          /* the current run, 0: none yet */
bool  mainAlive = false;
bool  leftAlive = false;
bool  unitEnded = true;   /* the loop has seen the current unit end */
byte  liveRuns = 0;       /* runs with a process alive: never 2 */

bool  shutdown = false;
bool  shutAsked = false;
bool  lock = false;

chan  ev = [8] of { mtype, byte };   /* events into the loop */
mtype = { E_EXIT, E_TIMER, E_SIGREQ, E_MAINEXIT, E_UNITEND, E_SHUTDOWN, E_JOBSTOP, E_SVCSTOP };
bool  stopAsked = false;  /* POST /v1/services/NAME/stop came */
bool  apiStopped = false; /* the loop's view: the service stays stopped */
bool  stopHonoured = false; /* the loop has taken the stop request */
bool  jobsDeferred = false;

inline acquire() { atomic { !lock -> lock = true } }
inline release() { lock = false }

/* signal job j's process through its handle (reaper.Child.Signal) */
inline signalJob(j, delivered) {
	acquire();
#ifdef RAW_SIGNAL
	if
	:: true ->
#else
	if
	:: !jreaped[j] ->
#endif
		/* kill(2) reaches the job's own process, a zombie of it at worst */
		assert(jalive[j]); /* invariant 3 */
		delivered = true
	:: else -> delivered = false
	fi;
	release()
}

inline finish(j, r) {
	jstate[j] = EXITED;
	if
	:: jreason[j] == R_NONE -> jreason[j] = r
	:: else -> skip
	fi;
	jends[j]++;
	assert(jends[j] == 1) /* invariant 2: a record ends once */
}

/* the jobs' part of the shutdown: queued ones dropped, running ones
 * signalled through their handles */
inline stopJobs() {
	i = 0;
	do
	:: i < NJOBS ->
		if
		:: jstate[i] == QUEUED -> finish(i, R_SHUTDOWN)
		:: jstate[i] == RUNNING -> signalJob(i, delivered);
			if :: delivered -> jreason[i] = R_SHUTDOWN :: else fi
		:: else -> skip
		fi;
		i++
	:: else -> break
	od
}

inline startJob(j) {
#ifndef START_IN_SHUTDOWN
	if
	:: !shutdown ->
#else
	if
	:: true ->
#endif
		assert(!shutdown); /* invariant 9: nothing starts once stopping */
		jstate[j] = RUNNING;
		jalive[j] = true;
		running++;
		jtimer[j] = true
	:: else -> skip
	fi
}

/* the world: job processes exit (the reaper reaps them under its lock
 * and tells the
 * loop), timers fire, API requests come, the service's processes exit,
 * a shutdown is asked for */
#define JOBEVENTS(J) \
	:: atomic { !lock && jalive[J] -> jalive[J] = false; jreaped[J] = true; ev ! E_EXIT, J } \
	:: atomic { jtimer[J] -> jtimer[J] = false; ev ! E_TIMER, J } \
	:: atomic { jsigs[J] > 0 -> jsigs[J]--; ev ! E_SIGREQ, J }

byte jsigs[NJOBS] = 1;   /* API signal requests each job may get */

active proctype World() {
end:	do
	JOBEVENTS(0)
	JOBEVENTS(1)
#if NJOBS > 2
	JOBEVENTS(2)
#endif
	:: atomic { mainAlive -> mainAlive = false;
		if :: !leftAlive -> liveRuns-- :: else -> skip fi; ev ! E_MAINEXIT, runno }
	/* the leftover goes after the main (the stop signal tend sends it) */
	:: atomic { leftAlive && !mainAlive -> leftAlive = false; liveRuns-- }
	:: atomic { !shutdown && !shutAsked -> shutAsked = true; ev ! E_SHUTDOWN, 0 }
	:: atomic { jobsDeferred -> jobsDeferred = false; ev ! E_JOBSTOP, 0 }
	:: atomic { !stopAsked && !shutAsked && runno > 0 -> stopAsked = true; ev ! E_SVCSTOP, 0 } /* 409 once stopping */
	od
}

/* the unit's end: once main and leftover are both gone, the unit tracking
 * (cgroup empty, helper reaped, group leader reaped) says so, once */
active proctype Unit() {
end:	do
	:: atomic { !unitEnded && !mainAlive && !leftAlive -> unitEnded = true; ev ! E_UNITEND, runno }
	od
}

inline startRun() {
	if
	:: !shutdown && runno < NRUNS && !apiStopped ->
		runno++;
		mainAlive = true;
		leftAlive = true;
		unitEnded = false;
		liveRuns++;
		assert(liveRuns <= 1);   /* invariant 11: no run overlaps the one before */
		assert(!stopAsked || !stopHonoured) /* a stopped service stays stopped */
	:: else -> skip
	fi
}

active proctype Loop() {
	mtype e;
	byte j;
	byte r;
	bool delivered;
	byte i;
	atomic { startRun() }
	/* submit every job */
	i = 0;
	do
	:: i < NJOBS ->
		if
		:: running < MAXRUN -> startJob(i)
		:: else -> skip
		fi;
		i++
	:: else -> break
	od;
end:	do
	:: ev ? e, j ->
		if
		:: e == E_EXIT ->
			if
			:: jstate[j] == RUNNING ->
				jtimer[j] = false;
				running--;
				finish(j, R_EXITED);
				/* a slot is free: the oldest queued starts */
				i = 0;
				do
				:: i < NJOBS && jstate[i] == QUEUED -> startJob(i); break
				:: i < NJOBS && jstate[i] != QUEUED -> i++
				:: else -> break
				od
			:: else -> skip
			fi
		:: e == E_TIMER ->
			if
			:: jstate[j] == RUNNING ->
				signalJob(j, delivered);
				if
				:: delivered -> jreason[j] = R_TIMEOUT; assert(jstate[j] == RUNNING)
				:: else -> skip /* it exited meanwhile: its exit comes */
				fi
			:: else -> skip
			fi
		:: e == E_SIGREQ ->
			if
			:: jstate[j] == RUNNING -> signalJob(j, delivered)
			:: else -> skip /* 409 or 404: nothing sent */
			fi
		:: e == E_MAINEXIT ->
#ifdef RESTART_ON_MAIN_EXIT
			/* the bug: restart at once, leftovers or not */
			atomic { startRun() }
#else
			/* the leftovers get the stop signal; the restart waits for
			 * the unit's end */
			skip
#endif
		:: e == E_UNITEND ->
#ifndef RESTART_ON_MAIN_EXIT
			atomic { startRun() }
#else
			skip
#endif
		:: e == E_SHUTDOWN ->
			shutdown = true;
			if
			:: stopJobs()             /* [jobs] stop = "with_main", "first" */
			:: jobsDeferred = true    /* "after_main": once the main has exited */
			fi
		:: e == E_JOBSTOP ->
			stopJobs()
		:: e == E_SVCSTOP ->
			/* the stop signal to the unit; its end restarts nothing */
#ifndef IGNORE_API_STOP
			apiStopped = true;
#endif
			stopHonoured = true
		fi
	od
}

/* Quiescent: every job that ran has its record finished once, with its
 * process gone; a queued one only if the shutdown dropped it. */
active proctype Quiescent() {
	byte i;
	timeout ->
	i = 0;
	do
	:: i < NJOBS ->
		assert(jends[i] <= 1);
		assert(jstate[i] != RUNNING || jalive[i]);
		assert(jstate[i] != EXITED || !jalive[i] || jreason[i] == R_SHUTDOWN);
		i++
	:: else -> break
	od;
	assert(liveRuns <= 1)
}
