# frozen_string_literal: true

# Stock gems from Debian with Polyphony loaded: in plain threads they must behave as without it
# (SpecHelpers#expect_same_as_stock), and in Polyphony's fibers they must work.
#
# sqlite3 1.4 waits for a busy database in C with the GVL held, so two threads *writing* at
# once can stall each other until the busy timeout even on stock Ruby (2 runs in 8 here), and so
# can a writer and readers in the default journal mode (a reader keeps its lock while the GVL
# goes to another thread between rows). The thread cases write from one thread while the others
# read, in WAL mode, where readers never hold the writer up: stock Ruby always passes that.
RSpec.describe 'stock gems with Polyphony loaded' do
  let(:active_record) do
    <<~RUBY
      require 'active_record'
      require 'tmpdir'
      ActiveRecord::Base.establish_connection(adapter: 'sqlite3', pool: 8, timeout: 10_000,
                                              database: File.join(Dir.mktmpdir, 'db.sqlite3'))
      ActiveRecord::Base.connection.execute('PRAGMA journal_mode=WAL')
      ActiveRecord::Migration.verbose = false
      ActiveRecord::Schema.define { create_table(:items) { |t| t.integer :n } }
      class Item < ActiveRecord::Base; end
    RUBY
  end

  let(:sequel) do
    <<~RUBY
      require 'sequel'
      require 'tmpdir'
      DB = Sequel.sqlite(File.join(Dir.mktmpdir, 'db.sqlite3'), max_connections: 8, timeout: 10_000)
      DB.run('PRAGMA journal_mode=WAL')
      DB.create_table(:items) { primary_key :id; Integer :n }
    RUBY
  end

  it 'runs ActiveRecord on sqlite3 in threads: one writing, three reading' do
    out = expect_same_as_stock(<<~RUBY)
      #{active_record}
      writer = Thread.new { 200.times { |i| Item.create!(n: i) }; Item.count }
      readers = 3.times.map do
        Thread.new { 100.times.map { Item.where('n >= 0').count }.each_cons(2).all? { |a, b| a <= b } }
      end
      p [writer.join(20)&.value, readers.map { |t| t.join(20)&.value }]
      p Item.sum(:n)
    RUBY
    expect(out).to eq("[200, [true, true, true]]\n19900\n")
  end

  it 'runs Sequel on sqlite3 in threads: one writing, three reading' do
    out = expect_same_as_stock(<<~RUBY)
      #{sequel}
      writer = Thread.new { 200.times { |i| DB[:items].insert(n: i) }; DB[:items].count }
      readers = 3.times.map do
        Thread.new { 100.times.map { DB[:items].where { n >= 0 }.count }.each_cons(2).all? { |a, b| a <= b } }
      end
      p [writer.join(20)&.value, readers.map { |t| t.join(20)&.value }]
      p DB[:items].sum(:n)
    RUBY
    expect(out).to eq("[200, [true, true, true]]\n19900\n")
  end

  it 'runs ActiveRecord and Sequel in fibers that write at once, with waits between queries' do
    out = run_with_polyphony(<<~RUBY)
      #{active_record}
      #{sequel}
      fibers = 4.times.map do |f|
        spin do
          50.times do |i|
            Item.transaction { Item.create!(n: f * 50 + i) }
            DB.transaction { DB[:items].insert(n: f * 50 + i) }
            sleep 0.001
          end
        end
      end
      Fiber.await(fibers)
      p [Item.count, Item.sum(:n), DB[:items].count, DB[:items].sum(:n)]
    RUBY
    expect(out).to eq("[200, 19900, 200, 19900]\n")
  end
end
