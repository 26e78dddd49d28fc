#!/bin/sh
# The multi-threaded and SIGKILL failover tests with the clients' libflare.so
# built under AddressSanitizer+UBSan, then ThreadSanitizer, preloaded behind
# their runtimes (servers run the normal build). A sanitizer report makes the
# client exit non-zero: the test fails.
build=$(cd "$1" && pwd)
failover="test_random_sigkills_20_trials,test_16_threads_through_failovers,test_sigpipe_not_raised_when_healed,test_every_replica_dead,test_reactive_failover_asks_the_manager,test_nonblocking_connect_moves_down_the_ranking,test_idle_waits_keep_deadline_and_settle_timeouts"
# event loops: asynchronous heals and epoll registrations that follow a swap
programs="test_python_asyncio_epoll,test_native_epoll_edge_triggered"
# framed connections: session replay, pipelines (curl is left out: it hangs
# with a sanitizer runtime preloaded, with or without flare)
protocols="test_redis_selected_database,test_redis_benchmark_pipelined,test_redis_pipeline_broken_midway,test_http_pipelined_gets"
# load balancing: per-request switches (blocking, pipelined, epoll) and
# connections moved on demand while a replica dies
balance="test_per_request_rr_client,test_per_request_switches_carry_the_proof,test_per_request_switch_proves_the_number_first,test_per_request_pool_closed_by_its_replica,test_per_request_pool_numbers_closed_by_the_program,test_per_request_pool_numbers_reused_for_a_socket,test_on_demand_move_socket_reused_by_the_program,test_per_request_redis_pipelined,test_per_request_ab_epoll,test_failover_while_rebinding"
# fail closed: kernel semantics kept, taints, sessions, epoll registrations
# read from /proc, and real session clients
failclosed="test_forking_server_slow_reply_is_a_reply,test_stdio_client_slow_replies,test_exec_child_inherits_socket,test_msg_waitall_and_zero_length_reads,test_sub_millisecond_select,test_server_first_protocol_not_replayed,test_refused_replay_ends_healing,test_forking_server_listener_dies,test_sendfile_request_surfaces,test_epoll_registration_before_connect,test_nonblocking_session_heal_never_blocks,test_nonblocking_reactive_heal_uses_the_table"
sessions="test_pymysql_reconnect,test_ssh_listener_killed"
# TLS sessions healed inside OpenSSL: blocking, hung, non-blocking (psql,
# like curl, hangs with a sanitizer runtime preloaded, with or without flare)
tls="test_s_client_goes_on_after_a_heal,test_redis_cli_tls_session_replayed,test_redis_cli_tls_hung_replica,test_python_ssl_nonblocking_asyncio,test_tls_record_body_after_its_header"
# acting on proof: identity, kernel counts, events, arguments, vfork, a
# private OpenSSL; and the transparency fuzzer's fixed seeds (it runs them all)
proof="test_closefrom_then_accept_on_the_number,test_sendto_with_address_is_a_write,test_zerocopy_notification_is_no_failure,test_raw_send_then_death_surfaces_at_once,test_raw_recv_then_death_replays_nothing,test_arguments_the_kernel_rejects,test_vfork_child_close_leaves_the_parent_alone,test_connect_takes_o_nonblock_as_the_kernel_has_it,test_connect_number_reused_before_its_failure,test_private_openssl_is_left_alone"
rc=0
for san in asan tsan; do
	rt=$(${CC:-cc} -print-file-name=lib$san.so)
	[ -e "$rt" ] || { echo "lib-sanitizers: no lib$san.so, skipped"; rc=1; continue; }
	echo "== libflare.so under $san"
	for pair in failover:"$failover" programs:"$programs" protocols:"$protocols" \
		balance:"$balance" failclosed:"$failclosed" sessions:"$sessions" tls:"$tls" \
		proof:"$proof" transparency:all; do
		FLARE_TEST_LIB="$build/lib-$san/libflare.so" FLARE_TEST_PRELOAD="$rt" \
		FLARE_TESTS="${pair#*:}" \
		ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		TSAN_OPTIONS=exitcode=66:report_signal_unsafe=0 \
			python3 -u "tests/integration/test_${pair%%:*}.py" "$build" || rc=1
	done
done
exit $rc
