# frozen_string_literal: true

desc 'Build the Rust extension (release) into lib/polyphony/'
task :compile do
  sh 'cargo build --locked --release -p polyphony-ext'
  cp 'target/release/libpolyphony_ext.so', 'lib/polyphony/polyphony_ext.so'
end

desc 'Run the RSpec suite'
task spec: :compile do
  sh 'rspec'
end
