# frozen_string_literal: true

require 'socket'
require 'tmpdir'

# examples/c/echo_server.c: a C echo server on the event loop, with callbacks, on both
# backends, serving several clients at once.
RSpec.describe 'the C echo server example' do
  %w[io_uring epoll].each do |backend|
    it "echoes for concurrent clients on #{backend}, then exits after the last one" do
      Dir.mktmpdir do |dir|
        binary = build_c_program('examples/c/echo_server.c', dir)
        server = IO.popen(['timeout', '30', binary, '3', backend == 'epoll' ? 'epoll' : 'auto'])
        port = server.gets.to_i
        clients = Array.new(3) { TCPSocket.new('127.0.0.1', port) }
        clients.each_with_index { |c, i| c.write("hello #{i}") }
        replies = clients.each_with_index.map { |c, i| c.readpartial(100).tap { c.write(" again #{i}") } }
        replies += clients.map { |c| c.readpartial(100) }
        clients.each(&:close)
        Process.wait(server.pid)
        expect($?.success?).to be(true)
        expect(replies).to eq(['hello 0', 'hello 1', 'hello 2', ' again 0', ' again 1', ' again 2'])
      end
    end
  end
end
