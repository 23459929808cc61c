# frozen_string_literal: true

require_relative 'polyphony/version'

require_relative 'polyphony/native'
H1P.__send__(:__define_polyphony__)
require_relative 'polyphony/core/exceptions'
require_relative 'polyphony/core/timeout'
require_relative 'polyphony/extensions/fiber'
require_relative 'polyphony/extensions/thread'
require_relative 'polyphony/extensions/kernel'
require_relative 'polyphony/core/wait_list'
require_relative 'polyphony/core/queue'
require_relative 'polyphony/core/channel'
require_relative 'polyphony/core/event'
require_relative 'polyphony/core/mutex'
require_relative 'polyphony/core/condition_variable'
require_relative 'polyphony/core/monitor'
require_relative 'polyphony/core/resource_pool'
require_relative 'polyphony/core/throttler'
require_relative 'polyphony/core/timer'
require_relative 'polyphony/core/scheduler'
require_relative 'polyphony/core/process'
require_relative 'polyphony/core/thread_pool'
require_relative 'polyphony/extensions/io'
require_relative 'polyphony/core/pipe'
require_relative 'polyphony/extensions/splice'
require_relative 'polyphony/extensions/compression'
require_relative 'polyphony/core/chain'
require_relative 'polyphony/net'
require_relative 'polyphony/tls'
require_relative 'polyphony/acme'
require_relative 'polyphony/websocket'
require_relative 'polyphony/extensions/child_output'
require_relative 'polyphony/extensions/root_fiber'
require_relative 'polyphony/adapters/timeout'

# Polyphony: fine-grained concurrency for Ruby on fibers, driven by io_uring.
module Polyphony
end

Fiber.current.__setup_root__

# Structured concurrency at the top: the program's children end before it does.
at_exit { Fiber.current.__shutdown_at_exit__ }
